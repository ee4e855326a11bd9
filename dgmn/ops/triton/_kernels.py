"""Triton kernels of the fused DGMN aggregation (forward and backward).

Layout and blocking (see ``BENCHMARKS.md`` for the reasoning):

* features are read channels-last, ``(B, H, W, C)`` with channel stride 1, so that every
  bilinear corner of a sample is one contiguous run of channels (16-byte vector loads);
* one program owns a ``TILE_H × TILE_W`` tile of receiving positions of one image and a block
  of ``BLOCK_C`` channels of one group (``CHUNKS`` blocks per group); grid
  ``(tiles, B · G · CHUNKS)``;
* it loops over the S rates (runtime loop, rates read from a small int32 tensor) and the K
  neighbours (unrolled), computes the sampling position, the four corner indices, their
  validity and bilinear weights once per (position, rate, neighbour) and reuses them for the
  whole channel block; accumulation is fp32.

The backward recomputes the samples (nothing but the inputs is saved) and produces

* ``∂L/∂weights`` — one dot product over the channel block per corner (a plain store when a
  program holds a whole group, fp32 atomics across channel blocks otherwise);
* ``∂L/∂walks`` — from the same four dot products through the derivatives of the bilinear
  weights, summed over groups with fp32 atomics (a store when G · CHUNKS = 1);
* ``∂L/∂features`` — scattered to the four corners with relaxed fp32 atomics into a
  channels-last fp32 buffer (the sampling positions are data dependent, so there is no
  gather formulation without an inverse index).
"""

from __future__ import annotations

import triton
import triton.language as tl

# The kernels call only Triton builtins and the jit functions of this module, plus ``_sum``:
# Triton's own jit'd library functions (tl.sum, tl.cdiv, tl.zeros, ...) are decorated when
# triton is imported, so they cannot run inside the private interpreted copy of this module
# (see ``fused.kernels``), which swaps ``_sum`` for an interpreter-side equivalent.
_sum = tl.sum


@triton.jit
def _sample_position(walk_q, swk_k, swk_d, walk_pos, py, px, pmask, rate, H, W,
                     k, KS: tl.constexpr, HAS_WALKS: tl.constexpr):
    """Sampling position ``p + ρ·δ_k (+ Δd_k)`` of neighbour k, in fp32 pixels (y, x)."""
    sy = (py + (k // KS - KS // 2) * rate).to(tl.float32)
    sx = (px + (k % KS - KS // 2) * rate).to(tl.float32)
    if HAS_WALKS:
        sy += tl.load(walk_q + k * swk_k + walk_pos, mask=pmask, other=0.0).to(tl.float32)
        sx += tl.load(walk_q + k * swk_k + swk_d + walk_pos, mask=pmask,
                      other=0.0).to(tl.float32)
        # Samples further than one pixel outside read only zeros: clamping them keeps the
        # float → int conversion finite without changing any value or gradient.
        sy = tl.minimum(tl.maximum(sy, -2.0), H + 1.0)
        sx = tl.minimum(tl.maximum(sx, -2.0), W + 1.0)
    return sy, sx


@triton.jit
def _corners(sy, sx, H, W, pmask):
    """Top-left corner, fractional parts and validity of the four bilinear corners."""
    y0f = tl.floor(sy)
    x0f = tl.floor(sx)
    ly = sy - y0f
    lx = sx - x0f
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    in_y0 = (y0 >= 0) & (y0 < H)
    in_y1 = (y0 >= -1) & (y0 < H - 1)
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x0 >= -1) & (x0 < W - 1)
    m00 = pmask & in_y0 & in_x0
    m01 = pmask & in_y0 & in_x1
    m10 = pmask & in_y1 & in_x0
    m11 = pmask & in_y1 & in_x1
    return y0, x0, ly, lx, m00, m01, m10, m11


@triton.jit
def _tile_coordinates(pid_t, pid_bgc, H, W, G, CHUNKS: tl.constexpr, TILE_H: tl.constexpr,
                      TILE_W: tl.constexpr, BLOCK_C: tl.constexpr):
    chunk = pid_bgc % CHUNKS
    g = (pid_bgc // CHUNKS) % G
    b = pid_bgc // (CHUNKS * G)
    tiles_w = (W + TILE_W - 1) // TILE_W
    offs = tl.arange(0, TILE_H * TILE_W)
    py = (pid_t // tiles_w) * TILE_H + offs // TILE_W
    px = (pid_t % tiles_w) * TILE_W + offs % TILE_W
    pmask = (py < H) & (px < W)
    cg = chunk * BLOCK_C + tl.arange(0, BLOCK_C)
    return b, g, py, px, pmask, cg


@triton.jit
def dgmn_fwd_kernel(
    feat_ptr, walks_ptr, weights_ptr, rates_ptr, out_ptr,
    H, W, CG, G, S,
    sf_b, sf_c, sf_h, sf_w,
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w,
    swt_b, swt_q, swt_g, swt_k, swt_h, swt_w,
    so_b, so_c, so_h, so_w,
    KS: tl.constexpr, HAS_WALKS: tl.constexpr, CHUNKS: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``out[b, c, p] = Σ_q Σ_k weights[b, q, g(c), k, p] · bilinear(features[b, c], pos)``."""
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask = cg < CG
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    feat_b = feat_ptr + b64 * sf_b
    chan_off = (chan * sf_c)[None, :]
    cmask2 = cmask[None, :]
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    acc = tl.full([TILE_H * TILE_W, BLOCK_C], 0.0, tl.float32)
    for q in range(S):
        rate = tl.load(rates_ptr + q)
        walk_q = walks_ptr + b64 * swk_b + q * swk_q
        weight_q = weights_ptr + b64 * swt_b + q * swt_q + g * swt_g
        for k in range(KS * KS):
            wgt = tl.load(weight_q + k * swt_k + weight_pos, mask=pmask,
                          other=0.0).to(tl.float32)
            sy, sx = _sample_position(walk_q, swk_k, swk_d, walk_pos, py, px, pmask, rate,
                                      H, W, k, KS, HAS_WALKS)
            if HAS_WALKS:
                y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
                base = feat_b + (y0 * sf_h + x0 * sf_w)[:, None] + chan_off
                v00 = tl.load(base, mask=m00[:, None] & cmask2, other=0.0).to(tl.float32)
                v01 = tl.load(base + sf_w, mask=m01[:, None] & cmask2, other=0.0).to(tl.float32)
                v10 = tl.load(base + sf_h, mask=m10[:, None] & cmask2, other=0.0).to(tl.float32)
                v11 = tl.load(base + sf_h + sf_w, mask=m11[:, None] & cmask2,
                              other=0.0).to(tl.float32)
                wy1 = wgt * ly
                wy0 = wgt - wy1
                c01 = wy0 * lx
                c11 = wy1 * lx
                acc += (wy0 - c01)[:, None] * v00
                acc += c01[:, None] * v01
                acc += (wy1 - c11)[:, None] * v10
                acc += c11[:, None] * v11
            else:
                yi = sy.to(tl.int32)
                xi = sx.to(tl.int32)
                valid = pmask & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
                ptrs = feat_b + (yi * sf_h + xi * sf_w)[:, None] + chan_off
                v = tl.load(ptrs, mask=valid[:, None] & cmask2, other=0.0).to(tl.float32)
                acc += wgt[:, None] * v
    out_ptrs = (out_ptr + b64 * so_b + (chan * so_c)[None, :]
                + (py * so_h + px * so_w)[:, None])
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & cmask2)


@triton.jit
def dgmn_bwd_feat_kernel(
    walks_ptr, weights_ptr, rates_ptr, gout_ptr, gfeat_ptr,
    H, W, CG, G, S,
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w,
    swt_b, swt_q, swt_g, swt_k, swt_h, swt_w,
    sgo_b, sgo_c, sgo_h, sgo_w,
    sgf_b, sgf_h, sgf_w,
    KS: tl.constexpr, HAS_WALKS: tl.constexpr, CHUNKS: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``∂L/∂features``: scatter ``weight · bilinear · grad_out`` to the four corners.

    ``gfeat`` is fp32 channels-last ``(B, H, W, C)`` (channel stride 1), zero-initialised;
    the adds are relaxed fp32 atomics (the sampling positions are data dependent).
    """
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask = cg < CG
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    gfeat_b = gfeat_ptr + b64 * sgf_b
    cmask2 = cmask[None, :]
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    go_ptrs = (gout_ptr + b64 * sgo_b + (chan * sgo_c)[None, :]
               + (py * sgo_h + px * sgo_w)[:, None])
    go = tl.load(go_ptrs, mask=pmask[:, None] & cmask2, other=0.0).to(tl.float32)
    for q in range(S):
        rate = tl.load(rates_ptr + q)
        walk_q = walks_ptr + b64 * swk_b + q * swk_q
        weight_q = weights_ptr + b64 * swt_b + q * swt_q + g * swt_g
        for k in range(KS * KS):
            wgt = tl.load(weight_q + k * swt_k + weight_pos, mask=pmask,
                          other=0.0).to(tl.float32)
            sy, sx = _sample_position(walk_q, swk_k, swk_d, walk_pos, py, px, pmask, rate,
                                      H, W, k, KS, HAS_WALKS)
            if HAS_WALKS:
                y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
                gbase = gfeat_b + (y0 * sgf_h + x0 * sgf_w)[:, None] + chan[None, :]
                wy1 = wgt * ly
                wy0 = wgt - wy1
                c01 = wy0 * lx
                c11 = wy1 * lx
                tl.atomic_add(gbase, (wy0 - c01)[:, None] * go,
                              mask=m00[:, None] & cmask2, sem="relaxed")
                tl.atomic_add(gbase + sgf_w, c01[:, None] * go,
                              mask=m01[:, None] & cmask2, sem="relaxed")
                tl.atomic_add(gbase + sgf_h, (wy1 - c11)[:, None] * go,
                              mask=m10[:, None] & cmask2, sem="relaxed")
                tl.atomic_add(gbase + sgf_h + sgf_w, c11[:, None] * go,
                              mask=m11[:, None] & cmask2, sem="relaxed")
            else:
                yi = sy.to(tl.int32)
                xi = sx.to(tl.int32)
                valid = pmask & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
                gptrs = gfeat_b + (yi * sgf_h + xi * sgf_w)[:, None] + chan[None, :]
                tl.atomic_add(gptrs, wgt[:, None] * go, mask=valid[:, None] & cmask2,
                              sem="relaxed")


@triton.jit
def dgmn_bwd_param_kernel(
    feat_ptr, walks_ptr, weights_ptr, rates_ptr, gout_ptr, gwalk_ptr, gweight_ptr,
    H, W, CG, G, S,
    sf_b, sf_c, sf_h, sf_w,
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w,
    swt_b, swt_q, swt_g, swt_k, swt_h, swt_w,
    sgo_b, sgo_c, sgo_h, sgo_w,
    sgk_b, sgk_q, sgk_k, sgk_d,
    sgt_b, sgt_q, sgt_g, sgt_k,
    KS: tl.constexpr, HAS_WALKS: tl.constexpr, CHUNKS: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_C: tl.constexpr,
    NEED_WALK: tl.constexpr, NEED_WEIGHT: tl.constexpr,
    ATOMIC_WALK: tl.constexpr, ATOMIC_WEIGHT: tl.constexpr,
):
    """``∂L/∂weights`` and ``∂L/∂walks`` from four channel dot products per sample.

    With ``d_ij = Σ_c grad_out[c] · features[c, corner ij]`` over the program's channels:
    ``∂L/∂w = bilinear(d)``, ``∂L/∂Δy = w · ∂bilinear(d)/∂y`` (same for x). ``gwalk``
    ``(B, S, K, 2, H, W)`` and ``gweight`` ``(B, S, G, K, H, W)`` are contiguous; the ones
    written with atomics (partial sums over groups / channel blocks) are fp32 and zeroed.
    """
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask = cg < CG
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    feat_b = feat_ptr + b64 * sf_b
    chan_off = (chan * sf_c)[None, :]
    cmask2 = cmask[None, :]
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    flat_pos = py * W + px
    go_ptrs = (gout_ptr + b64 * sgo_b + (chan * sgo_c)[None, :]
               + (py * sgo_h + px * sgo_w)[:, None])
    go = tl.load(go_ptrs, mask=pmask[:, None] & cmask2, other=0.0).to(tl.float32)
    for q in range(S):
        rate = tl.load(rates_ptr + q)
        walk_q = walks_ptr + b64 * swk_b + q * swk_q
        weight_q = weights_ptr + b64 * swt_b + q * swt_q + g * swt_g
        gwalk_q = gwalk_ptr + b64 * sgk_b + q * sgk_q + flat_pos
        gweight_q = gweight_ptr + b64 * sgt_b + q * sgt_q + g * sgt_g + flat_pos
        for k in range(KS * KS):
            sy, sx = _sample_position(walk_q, swk_k, swk_d, walk_pos, py, px, pmask, rate,
                                      H, W, k, KS, HAS_WALKS)
            if HAS_WALKS:
                y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
                base = feat_b + (y0 * sf_h + x0 * sf_w)[:, None] + chan_off
                d00 = _sum(go * tl.load(base, mask=m00[:, None] & cmask2,
                                        other=0.0).to(tl.float32), axis=1)
                d01 = _sum(go * tl.load(base + sf_w, mask=m01[:, None] & cmask2,
                                        other=0.0).to(tl.float32), axis=1)
                d10 = _sum(go * tl.load(base + sf_h, mask=m10[:, None] & cmask2,
                                        other=0.0).to(tl.float32), axis=1)
                d11 = _sum(go * tl.load(base + sf_h + sf_w, mask=m11[:, None] & cmask2,
                                        other=0.0).to(tl.float32), axis=1)
                top = d00 + lx * (d01 - d00)
                bottom = d10 + lx * (d11 - d10)
                if NEED_WEIGHT:
                    gw = top + ly * (bottom - top)
                    if ATOMIC_WEIGHT:
                        tl.atomic_add(gweight_q + k * sgt_k, gw, mask=pmask, sem="relaxed")
                    else:
                        tl.store(gweight_q + k * sgt_k, gw, mask=pmask)
                if NEED_WALK:
                    wgt = tl.load(weight_q + k * swt_k + weight_pos, mask=pmask,
                                  other=0.0).to(tl.float32)
                    gy = wgt * (bottom - top)
                    left = d00 + ly * (d10 - d00)
                    right = d01 + ly * (d11 - d01)
                    gx = wgt * (right - left)
                    gk_ptrs = gwalk_q + k * sgk_k
                    if ATOMIC_WALK:
                        tl.atomic_add(gk_ptrs, gy, mask=pmask, sem="relaxed")
                        tl.atomic_add(gk_ptrs + sgk_d, gx, mask=pmask, sem="relaxed")
                    else:
                        tl.store(gk_ptrs, gy, mask=pmask)
                        tl.store(gk_ptrs + sgk_d, gx, mask=pmask)
            else:
                yi = sy.to(tl.int32)
                xi = sx.to(tl.int32)
                valid = pmask & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)
                v = tl.load(feat_b + (yi * sf_h + xi * sf_w)[:, None] + chan_off,
                            mask=valid[:, None] & cmask2, other=0.0).to(tl.float32)
                gw = _sum(go * v, axis=1)
                if ATOMIC_WEIGHT:
                    tl.atomic_add(gweight_q + k * sgt_k, gw, mask=pmask, sem="relaxed")
                else:
                    tl.store(gweight_q + k * sgt_k, gw, mask=pmask)
