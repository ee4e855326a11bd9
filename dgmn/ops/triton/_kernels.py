"""Triton kernels of the fused DGMN aggregation (forward and backward).

Layout and blocking (see ``BENCHMARKS.md`` for the reasoning):

* features are read channels-last, ``(B, H, W, C)`` with channel stride 1, so that every
  bilinear corner of a sample is one contiguous run of channels (16-byte vector loads);
* one program owns a ``TILE_H × TILE_W`` tile of receiving positions of one image and a block
  of ``BLOCK_C`` channels of one group (``CHUNKS`` blocks per group); grid
  ``(tiles, B · G · CHUNKS)``;
* it runs one loop over the S·K (rate, neighbour) pairs (a runtime loop: unrolling it made
  ptxas spill), computes the sampling position, the four corner indices, their validity and
  bilinear weights once per (position, rate, neighbour) and reuses them for the whole channel
  block; accumulation is fp32;
* the per-sample parameters of the next iteration (rate, walk, weight) are loaded before the
  current gathers are issued, so their latency hides behind the gathers (hand pipelining).

Backward recomputes the samples (only the inputs are saved) with two kernels on the same grid:

* ``dgmn_bwd_feat_kernel``: ``∂L/∂features`` scattered to the four corners with relaxed fp32
  atomics into a channels-last fp32 buffer (sampling positions are data dependent, so there
  is no gather formulation without an inverse index); it reads no features;
* ``dgmn_bwd_param_kernel``: per sample four dot products over the channel block,
  ``d_ij = Σ_c grad_out[c] · features[c, corner ij]``, give ``∂L/∂weights`` (a store when a
  program holds a whole group, fp32 atomics across channel blocks otherwise) and
  ``∂L/∂walks`` through the derivatives of the bilinear weights (fp32 atomics summing the
  groups; a store when G · CHUNKS = 1).
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
def _tile_coordinates(pid_t, pid_bgc, H, W, G, CHUNKS: tl.constexpr, TILE_H: tl.constexpr,
                      TILE_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """Image, group, positions (y, x, in-map mask) and channels-in-group of a program."""
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
def _sample_params(it, num_iters, rates_ptr, walk_b, weight_bg, walk_pos, weight_pos, pmask,
                   swk_q, swk_k, swk_d, swt_q, swt_k,
                   KK: tl.constexpr, HAS_WALKS: tl.constexpr, LOAD_WEIGHT: tl.constexpr):
    """Rate, walk (dy, dx) and weight of iteration ``it`` (zeros when ``it ≥ num_iters``)."""
    valid = it < num_iters
    q = it // KK
    k = it - q * KK
    rate = tl.load(rates_ptr + q, mask=valid, other=0)
    mask = pmask & valid
    dy = tl.full(weight_pos.shape, 0.0, tl.float32)
    dx = dy
    wgt = dy
    if HAS_WALKS:
        walk = walk_b + q * swk_q + k * swk_k + walk_pos
        dy = tl.load(walk, mask=mask, other=0.0).to(tl.float32)
        dx = tl.load(walk + swk_d, mask=mask, other=0.0).to(tl.float32)
    if LOAD_WEIGHT:
        wgt = tl.load(weight_bg + q * swt_q + k * swt_k + weight_pos, mask=mask,
                      other=0.0).to(tl.float32)
    return rate, dy, dx, wgt


@triton.jit
def _position(k, rate, dy, dx, py, px, H, W, KS: tl.constexpr, HAS_WALKS: tl.constexpr):
    """Sampling position ``p + ρ·δ_k (+ Δd_k)`` of neighbour ``k``, fp32 pixels (y, x).

    Every kernel (and the inverse index) computes positions with this function, so they
    agree bit for bit on the bilinear cell of each sample.
    """
    sy = (py + (k // KS - KS // 2) * rate).to(tl.float32)
    sx = (px + (k % KS - KS // 2) * rate).to(tl.float32)
    if HAS_WALKS:
        # Samples further than one pixel outside read only zeros: clamping them keeps the
        # float → int conversion finite without changing any value or gradient.
        sy = tl.minimum(tl.maximum(sy + dy, -2.0), H + 1.0)
        sx = tl.minimum(tl.maximum(sx + dx, -2.0), W + 1.0)
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
    KK: tl.constexpr = KS * KS
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask2 = (cg < CG)[None, :]
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    feat_b = feat_ptr + b64 * sf_b
    chan_off = (chan * sf_c)[None, :]
    walk_b = walks_ptr + b64 * swk_b
    weight_bg = weights_ptr + b64 * swt_b + g * swt_g
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    num_iters = S * KK
    acc = tl.full([TILE_H * TILE_W, BLOCK_C], 0.0, tl.float32)
    rate, dy, dx, wgt = _sample_params(0, num_iters, rates_ptr, walk_b, weight_bg, walk_pos,
                                       weight_pos, pmask, swk_q, swk_k, swk_d, swt_q, swt_k,
                                       KK, HAS_WALKS, True)
    for it in range(num_iters):
        n_rate, n_dy, n_dx, n_wgt = _sample_params(
            it + 1, num_iters, rates_ptr, walk_b, weight_bg, walk_pos, weight_pos, pmask,
            swk_q, swk_k, swk_d, swt_q, swt_k, KK, HAS_WALKS, True)
        sy, sx = _position(it % KK, rate, dy, dx, py, px, H, W, KS, HAS_WALKS)
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
            v = tl.load(feat_b + (yi * sf_h + xi * sf_w)[:, None] + chan_off,
                        mask=valid[:, None] & cmask2, other=0.0).to(tl.float32)
            acc += wgt[:, None] * v
        rate, dy, dx, wgt = n_rate, n_dy, n_dx, n_wgt
    out_ptrs = (out_ptr + b64 * so_b + (chan * so_c)[None, :]
                + (py * so_h + px * so_w)[:, None])
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & cmask2)


@triton.jit
def dgmn_cell_keys_kernel(
    walks_ptr, rates_ptr, keys_ptr,
    H, W, S, total,
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w,
    KS: tl.constexpr, BLOCK: tl.constexpr,
):
    """Bilinear cell of every sample, for the inverse index of the gather backward.

    Sample ``i`` of the flat ``(B, S, K, H, W)`` order gets the key
    ``b·(cells + 1) + (y0 + 1)·(W + 1) + (x0 + 1)`` with ``(y0, x0)`` its top-left corner
    (``cells = (H + 1)(W + 1)``), or ``b·(cells + 1) + cells`` when no corner is in the map.
    """
    KK: tl.constexpr = KS * KS
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < total
    hw = H * W
    p = offs % hw
    qk = (offs // hw) % (S * KK)
    b = offs // (hw * S * KK)
    q = qk // KK
    k = qk - q * KK
    py = p // W
    px = p - py * W
    rate = tl.load(rates_ptr + q, mask=valid, other=0)
    walk = (walks_ptr + b.to(tl.int64) * swk_b + q * swk_q + k * swk_k + py * swk_h
            + px * swk_w)
    dy = tl.load(walk, mask=valid, other=0.0).to(tl.float32)
    dx = tl.load(walk + swk_d, mask=valid, other=0.0).to(tl.float32)
    sy, sx = _position(k, rate, dy, dx, py, px, H, W, KS, True)
    y0 = tl.floor(sy).to(tl.int32)
    x0 = tl.floor(sx).to(tl.int32)
    cells = (H + 1) * (W + 1)
    inside = (y0 >= -1) & (y0 < H) & (x0 >= -1) & (x0 < W)
    key = tl.where(inside, (y0 + 1) * (W + 1) + (x0 + 1), cells)
    tl.store(keys_ptr + offs, b * (cells + 1) + key, mask=valid)


@triton.jit
def _gather_relation(j, start, end, tmask, ty, tx, b, order_ptr, rates_ptr, walk_b,
                     weight_bg, go_b, chan_go, cmask2, H, W, S,
                     swk_q, swk_k, swk_d, swk_h, swk_w, swt_q, swt_k, swt_h, swt_w,
                     sgo_h, sgo_w,
                     RY: tl.constexpr, RX: tl.constexpr, KS: tl.constexpr):
    """``coef · grad_out[sample]`` of the ``j``-th sample whose corner (RY, RX) is the target.

    ``start``/``end`` bound, per target pixel, the sorted samples whose top-left corner is
    ``(ty - RY, tx - RX)``; the sample's position is recomputed exactly as in the forward.
    """
    KK: tl.constexpr = KS * KS
    idx = start + j
    valid = tmask & (idx < end)
    sid = tl.load(order_ptr + idx, mask=valid, other=0)
    hw = H * W
    local = sid - b * (S * KK * hw)
    p = local % hw
    qk = local // hw
    q = qk // KK
    k = qk - q * KK
    py = p // W
    px = p - py * W
    rate = tl.load(rates_ptr + q, mask=valid, other=0)
    walk = walk_b + q * swk_q + k * swk_k + py * swk_h + px * swk_w
    dy = tl.load(walk, mask=valid, other=0.0).to(tl.float32)
    dx = tl.load(walk + swk_d, mask=valid, other=0.0).to(tl.float32)
    wgt = tl.load(weight_bg + q * swt_q + k * swt_k + py * swt_h + px * swt_w, mask=valid,
                  other=0.0).to(tl.float32)
    sy, sx = _position(k, rate, dy, dx, py, px, H, W, KS, True)
    y0f = tl.floor(sy)
    x0f = tl.floor(sx)
    ly = sy - y0f
    lx = sx - x0f
    hit = valid & (y0f.to(tl.int32) == ty - RY) & (x0f.to(tl.int32) == tx - RX)
    if RY == 1:
        wy = ly
    else:
        wy = 1.0 - ly
    if RX == 1:
        wx = lx
    else:
        wx = 1.0 - lx
    coef = wgt * wy * wx
    go = tl.load(go_b + (py * sgo_h + px * sgo_w)[:, None] + chan_go,
                 mask=hit[:, None] & cmask2, other=0.0).to(tl.float32)
    return tl.where(hit[:, None], coef[:, None] * go, 0.0)


@triton.jit
def dgmn_bwd_feat_gather_kernel(
    walks_ptr, weights_ptr, rates_ptr, gout_ptr, gfeat_ptr, order_ptr, starts_ptr,
    tile_max_ptr,
    H, W, CG, G, S,
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w,
    swt_b, swt_q, swt_g, swt_k, swt_h, swt_w,
    sgo_b, sgo_c, sgo_h, sgo_w,
    sgf_b, sgf_c, sgf_h, sgf_w,
    KS: tl.constexpr, HAS_WALKS: tl.constexpr, CHUNKS: tl.constexpr,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``∂L/∂features`` gathered per target pixel: no atomics, deterministic.

    Uniform sampling (no walks): target t receives ``weight · grad_out`` from the positions
    ``t − ρ·δ_k``. With walks: from the samples whose bilinear cell touches t, read through
    the inverse index (``order``: sample ids sorted by cell key, ``starts``: offsets per
    key, ``tile_max``: the longest cell list each tile visits). ``gfeat`` is written once,
    in its final dtype, at any strides.
    """
    KK: tl.constexpr = KS * KS
    pid_t = tl.program_id(0)
    b, g, ty, tx, tmask, cg = _tile_coordinates(pid_t, tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask2 = (cg < CG)[None, :]
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    go_b = gout_ptr + b64 * sgo_b
    chan_go = (chan * sgo_c)[None, :]
    walk_b = walks_ptr + b64 * swk_b
    weight_bg = weights_ptr + b64 * swt_b + g * swt_g
    acc = tl.full([TILE_H * TILE_W, BLOCK_C], 0.0, tl.float32)
    if HAS_WALKS:
        num_tiles = tl.num_programs(0)
        n_max = tl.load(tile_max_ptr + b * num_tiles + pid_t)
        cell = b * ((H + 1) * (W + 1) + 1) + (ty + 1) * (W + 1) + (tx + 1)
        s00 = tl.load(starts_ptr + cell, mask=tmask, other=0)
        e00 = tl.load(starts_ptr + cell + 1, mask=tmask, other=0)
        s01 = tl.load(starts_ptr + cell - 1, mask=tmask, other=0)
        e01 = tl.load(starts_ptr + cell, mask=tmask, other=0)
        s10 = tl.load(starts_ptr + cell - (W + 1), mask=tmask, other=0)
        e10 = tl.load(starts_ptr + cell - W, mask=tmask, other=0)
        s11 = tl.load(starts_ptr + cell - (W + 2), mask=tmask, other=0)
        e11 = tl.load(starts_ptr + cell - (W + 1), mask=tmask, other=0)
        for j in range(n_max):
            acc += _gather_relation(j, s00, e00, tmask, ty, tx, b, order_ptr, rates_ptr,
                                    walk_b, weight_bg, go_b, chan_go, cmask2, H, W, S,
                                    swk_q, swk_k, swk_d, swk_h, swk_w, swt_q, swt_k, swt_h,
                                    swt_w, sgo_h, sgo_w, 0, 0, KS)
            acc += _gather_relation(j, s01, e01, tmask, ty, tx, b, order_ptr, rates_ptr,
                                    walk_b, weight_bg, go_b, chan_go, cmask2, H, W, S,
                                    swk_q, swk_k, swk_d, swk_h, swk_w, swt_q, swt_k, swt_h,
                                    swt_w, sgo_h, sgo_w, 0, 1, KS)
            acc += _gather_relation(j, s10, e10, tmask, ty, tx, b, order_ptr, rates_ptr,
                                    walk_b, weight_bg, go_b, chan_go, cmask2, H, W, S,
                                    swk_q, swk_k, swk_d, swk_h, swk_w, swt_q, swt_k, swt_h,
                                    swt_w, sgo_h, sgo_w, 1, 0, KS)
            acc += _gather_relation(j, s11, e11, tmask, ty, tx, b, order_ptr, rates_ptr,
                                    walk_b, weight_bg, go_b, chan_go, cmask2, H, W, S,
                                    swk_q, swk_k, swk_d, swk_h, swk_w, swt_q, swt_k, swt_h,
                                    swt_w, sgo_h, sgo_w, 1, 1, KS)
    else:
        for it in range(S * KK):
            q = it // KK
            k = it - q * KK
            rate = tl.load(rates_ptr + q)
            py = ty - (k // KS - KS // 2) * rate
            px = tx - (k % KS - KS // 2) * rate
            valid = tmask & (py >= 0) & (py < H) & (px >= 0) & (px < W)
            wgt = tl.load(weight_bg + q * swt_q + k * swt_k + py * swt_h + px * swt_w,
                          mask=valid, other=0.0).to(tl.float32)
            go = tl.load(go_b + (py * sgo_h + px * sgo_w)[:, None] + chan_go,
                         mask=valid[:, None] & cmask2, other=0.0).to(tl.float32)
            acc += wgt[:, None] * go
    out_ptrs = (gfeat_ptr + b64 * sgf_b + (chan * sgf_c)[None, :]
                + (ty * sgf_h + tx * sgf_w)[:, None])
    tl.store(out_ptrs, acc.to(gfeat_ptr.dtype.element_ty), mask=tmask[:, None] & cmask2)


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
    the adds are relaxed fp32 atomics. ``grad_out`` should be fp32 channels-last too: its
    register layout then matches the atomics' and no shared-memory conversion is needed.
    """
    KK: tl.constexpr = KS * KS
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask2 = (cg < CG)[None, :]
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    gfeat_b = gfeat_ptr + b64 * sgf_b
    walk_b = walks_ptr + b64 * swk_b
    weight_bg = weights_ptr + b64 * swt_b + g * swt_g
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    go_ptrs = (gout_ptr + b64 * sgo_b + (chan * sgo_c)[None, :]
               + (py * sgo_h + px * sgo_w)[:, None])
    go = tl.load(go_ptrs, mask=pmask[:, None] & cmask2, other=0.0).to(tl.float32)
    num_iters = S * KK
    rate, dy, dx, wgt = _sample_params(0, num_iters, rates_ptr, walk_b, weight_bg, walk_pos,
                                       weight_pos, pmask, swk_q, swk_k, swk_d, swt_q, swt_k,
                                       KK, HAS_WALKS, True)
    for it in range(num_iters):
        n_rate, n_dy, n_dx, n_wgt = _sample_params(
            it + 1, num_iters, rates_ptr, walk_b, weight_bg, walk_pos, weight_pos, pmask,
            swk_q, swk_k, swk_d, swt_q, swt_k, KK, HAS_WALKS, True)
        sy, sx = _position(it % KK, rate, dy, dx, py, px, H, W, KS, HAS_WALKS)
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
        rate, dy, dx, wgt = n_rate, n_dy, n_dx, n_wgt


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
    ``(B, S, K, 2, H, W)`` and ``gweight`` ``(B, S, G, K, H, W)`` have contiguous ``(H, W)``
    planes; the ones written with atomics (partial sums over groups / channel blocks) are
    fp32 and zeroed.
    """
    KK: tl.constexpr = KS * KS
    b, g, py, px, pmask, cg = _tile_coordinates(tl.program_id(0), tl.program_id(1), H, W, G,
                                                CHUNKS, TILE_H, TILE_W, BLOCK_C)
    cmask2 = (cg < CG)[None, :]
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    feat_b = feat_ptr + b64 * sf_b
    chan_off = (chan * sf_c)[None, :]
    walk_b = walks_ptr + b64 * swk_b
    weight_bg = weights_ptr + b64 * swt_b + g * swt_g
    walk_pos = py * swk_h + px * swk_w
    weight_pos = py * swt_h + px * swt_w
    flat_pos = py * W + px
    gwalk_b = gwalk_ptr + b64 * sgk_b + flat_pos
    gweight_bg = gweight_ptr + b64 * sgt_b + g * sgt_g + flat_pos
    go_ptrs = (gout_ptr + b64 * sgo_b + (chan * sgo_c)[None, :]
               + (py * sgo_h + px * sgo_w)[:, None])
    go = tl.load(go_ptrs, mask=pmask[:, None] & cmask2, other=0.0).to(tl.float32)
    num_iters = S * KK
    rate, dy, dx, wgt = _sample_params(0, num_iters, rates_ptr, walk_b, weight_bg, walk_pos,
                                       weight_pos, pmask, swk_q, swk_k, swk_d, swt_q, swt_k,
                                       KK, HAS_WALKS, NEED_WALK)
    for it in range(num_iters):
        n_rate, n_dy, n_dx, n_wgt = _sample_params(
            it + 1, num_iters, rates_ptr, walk_b, weight_bg, walk_pos, weight_pos, pmask,
            swk_q, swk_k, swk_d, swt_q, swt_k, KK, HAS_WALKS, NEED_WALK)
        q = it // KK
        k = it - q * KK
        sy, sx = _position(it % KK, rate, dy, dx, py, px, H, W, KS, HAS_WALKS)
        gw_ptrs = gweight_bg + q * sgt_q + k * sgt_k
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
                    tl.atomic_add(gw_ptrs, gw, mask=pmask, sem="relaxed")
                else:
                    tl.store(gw_ptrs, gw, mask=pmask)
            if NEED_WALK:
                gy = wgt * (bottom - top)
                left = d00 + ly * (d10 - d00)
                right = d01 + ly * (d11 - d01)
                gx = wgt * (right - left)
                gk_ptrs = gwalk_b + q * sgk_q + k * sgk_k
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
                tl.atomic_add(gw_ptrs, gw, mask=pmask, sem="relaxed")
            else:
                tl.store(gw_ptrs, gw, mask=pmask)
        rate, dy, dx, wgt = n_rate, n_dy, n_dx, n_wgt
