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

* ``dgmn_bwd_feat_gather_kernel`` (the default) or ``dgmn_bwd_feat_kernel``: ``∂L/∂features``
  gathered per target pixel through an inverse index (``dgmn_cell_keys_kernel`` + a sort;
  no atomics, deterministic), or scattered to the four corners with relaxed fp32 atomics
  into a channels-last fp32 buffer; neither reads features;
* ``dgmn_bwd_param_kernel``: per sample four dot products over the channel block,
  ``d_ij = Σ_c grad_out[c] · features[c, corner ij]``, give ``∂L/∂weights`` (a store when a
  program holds a whole group, fp32 atomics across channel blocks otherwise) and
  ``∂L/∂walks`` through the derivatives of the bilinear weights (fp32 atomics summing the
  groups; a store when G · CHUNKS = 1).

The kernels share one prologue (:func:`_program_tile`), one loop step over the S·K pairs
(:func:`_sample_step`) and the position / cell / weight helpers below them.
"""

from __future__ import annotations

import triton
import triton.language as tl

# The kernels call only Triton builtins and the jit functions of this module, plus ``_sum``:
# Triton's own jit'd library functions (tl.sum, tl.cdiv, tl.zeros, ...) are decorated when
# triton is imported, so they cannot run inside the private interpreted copy of this module
# (see ``fused.kernels``), which swaps ``_sum`` for an interpreter-side equivalent.
_sum = tl.sum


# ----------------------------------------------------------------------------------------------
# Pieces shared by the kernels. Triton inlines jit functions into their callers, so factoring
# them out does not change the arithmetic; every kernel computing tiles, positions, bilinear
# cells and corner weights through the same function is what makes them agree bit for bit.
# Tuples group what travels together (the walks and weights of one program, its tile).


@triton.jit
def _program_tile(rates_ptr, walks_ptr, weights_ptr, swk, swt, H, W, CG, G,
                  CHUNKS: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr,
                  BLOCK_C: tl.constexpr):
    """Prologue of the tiled kernels: what program ``(tile, (b, g, chunk))`` works on.

    ``swk`` / ``swt``: the strides of walks ``(B, S, K, 2, H, W)`` / weights
    ``(B, S, G, K, H, W)``. Returns ``tile = (b, b64, g, py, px, pmask, chan, cmask2)``: the
    image (also as int64, for addressing), the group, the ``TILE_H·TILE_W`` positions with
    their in-map mask, the block's ``BLOCK_C`` channel indices with their ``(1, BLOCK_C)``
    mask; and ``samples``, the walks and weights of image ``b`` and group ``g`` as
    :func:`_sample_params` and :func:`_gather_relation` read them.
    """
    pid_t = tl.program_id(0)
    pid_bgc = tl.program_id(1)
    chunk = pid_bgc % CHUNKS
    g = (pid_bgc // CHUNKS) % G
    b = pid_bgc // (CHUNKS * G)
    tiles_w = (W + TILE_W - 1) // TILE_W
    offs = tl.arange(0, TILE_H * TILE_W)
    py = (pid_t // tiles_w) * TILE_H + offs // TILE_W
    px = (pid_t % tiles_w) * TILE_W + offs % TILE_W
    pmask = (py < H) & (px < W)
    cg = chunk * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask2 = (cg < CG)[None, :]
    chan = g * CG + cg
    b64 = b.to(tl.int64)
    swk_b, swk_q, swk_k, swk_d, swk_h, swk_w = swk
    swt_b, swt_q, swt_g, swt_k, swt_h, swt_w = swt
    samples = (rates_ptr, walks_ptr + b64 * swk_b, weights_ptr + b64 * swt_b + g * swt_g,
               py * swk_h + px * swk_w, py * swt_h + px * swt_w, pmask,
               (swk_q, swk_k, swk_d, swk_h, swk_w), (swt_q, swt_k, swt_h, swt_w))
    return (b, b64, g, py, px, pmask, chan, cmask2), samples


@triton.jit
def _channel_rows(ptr, b64, chan, s_b, s_c):
    """Base pointer of image ``b`` and the ``(1, BLOCK_C)`` offsets of the block's channels."""
    return ptr + b64 * s_b, (chan * s_c)[None, :]


@triton.jit
def _tile_ptrs(ptr, b64, chan, py, px, s_b, s_c, s_h, s_w):
    """``(positions, channels)`` pointers into a ``(B, C, H, W)`` tensor at any strides."""
    return ptr + b64 * s_b + (chan * s_c)[None, :] + (py * s_h + px * s_w)[:, None]


@triton.jit
def _sample_params(it, S, samples, KS: tl.constexpr, HAS_WALKS: tl.constexpr,
                   LOAD_WEIGHT: tl.constexpr):
    """Rate, walk (dy, dx) and weight of iteration ``it`` of the ``S·K`` loop (zeros past it)."""
    KK: tl.constexpr = KS * KS
    rates_ptr, walk_b, weight_bg, walk_pos, weight_pos, pmask, swk, swt = samples
    swk_q, swk_k, swk_d, _, _ = swk
    swt_q, swt_k, _, _ = swt
    valid = it < S * KK
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
def _sample_step(it, params, samples, tile, H, W, S, KS: tl.constexpr,
                 HAS_WALKS: tl.constexpr, LOAD_WEIGHT: tl.constexpr):
    """One iteration of the ``S·K`` loop: position ``(sy, sx)`` and weight of iteration
    ``it`` from its ``params``, and the parameters of iteration ``it + 1``, whose loads are
    issued first so that their latency hides behind this iteration's gathers."""
    following = _sample_params(it + 1, S, samples, KS, HAS_WALKS, LOAD_WEIGHT)
    rate, dy, dx, wgt = params
    _, _, _, py, px, _, _, _ = tile
    sy, sx = _position(it % (KS * KS), rate, dy, dx, py, px, H, W, KS, HAS_WALKS)
    return sy, sx, wgt, following


@triton.jit
def _sample_walk(p, qk, valid, rates_ptr, walk_b, swk, W, KS: tl.constexpr):
    """Rate index, neighbour, receiving position, rate and walk of one sample.

    ``p`` is the sample's flat position in the map, ``qk`` its (rate, neighbour) index;
    ``walk_b`` points at the image's walks, ``swk`` holds their (q, k, d, h, w) strides.
    Returns ``q, k, py, px, rate, dy, dx`` (for :func:`_position`).
    """
    KK: tl.constexpr = KS * KS
    swk_q, swk_k, swk_d, swk_h, swk_w = swk
    q = qk // KK
    k = qk - q * KK
    py = p // W
    px = p - py * W
    rate = tl.load(rates_ptr + q, mask=valid, other=0)
    walk = walk_b + q * swk_q + k * swk_k + py * swk_h + px * swk_w
    dy = tl.load(walk, mask=valid, other=0.0).to(tl.float32)
    dx = tl.load(walk + swk_d, mask=valid, other=0.0).to(tl.float32)
    return q, k, py, px, rate, dy, dx


@triton.jit
def _inside(y, x, H, W, mask):
    """``mask`` where the integer pixel ``(y, x)`` lies in the ``H × W`` map."""
    return mask & (y >= 0) & (y < H) & (x >= 0) & (x < W)


@triton.jit
def _nearest(sy, sx, H, W, pmask):
    """Pixel ``(yi, xi)`` of an integer sampling position (uniform grid) and its validity."""
    yi = sy.to(tl.int32)
    xi = sx.to(tl.int32)
    return yi, xi, _inside(yi, xi, H, W, pmask)


@triton.jit
def _cell(sy, sx):
    """Top-left corner ``(y0, x0)`` of the bilinear cell of ``(sy, sx)``, fractions ``(ly, lx)``."""
    y0f = tl.floor(sy)
    x0f = tl.floor(sx)
    ly = sy - y0f
    lx = sx - x0f
    return y0f.to(tl.int32), x0f.to(tl.int32), ly, lx


@triton.jit
def _corners(sy, sx, H, W, pmask):
    """Top-left corner, fractional parts and validity of the four bilinear corners."""
    y0, x0, ly, lx = _cell(sy, sx)
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
def _bilinear_weights(wgt, ly, lx):
    """``wgt`` split over the two rows of the cell, ``wy0 = wgt·(1-ly)``, ``wy1 = wgt·ly``, and
    their right-column parts ``c01 = wy0·lx``, ``c11 = wy1·lx``: the corner weights are
    ``wy0 - c01``, ``c01``, ``wy1 - c11``, ``c11`` (four multiplications in all)."""
    wy1 = wgt * ly
    wy0 = wgt - wy1
    return wy0, wy0 * lx, wy1, wy1 * lx


@triton.jit
def _load_tile(ptrs, mask, cmask2):
    """fp32 ``(positions, channels)`` tile at ``ptrs``, zero where the position ``mask`` or
    the channel mask ``cmask2`` is off."""
    return tl.load(ptrs, mask=mask[:, None] & cmask2, other=0.0).to(tl.float32)


@triton.jit
def _load_rows(base_b, chan_off, y, x, s_h, s_w, mask, cmask2):
    """:func:`_load_tile` of the channel runs at the pixels ``(y, x)`` of one image."""
    # Triton evaluates keyword arguments before positional ones: the mask is built before
    # the pointers, the instruction order the kernels' register counts were measured with.
    return tl.load(base_b + (y * s_h + x * s_w)[:, None] + chan_off,
                   mask=mask[:, None] & cmask2, other=0.0).to(tl.float32)


@triton.jit
def _load_corners(feat_b, chan_off, y0, x0, sf_h, sf_w, m00, m01, m10, m11, cmask2):
    """The four corners' channel runs as fp32 ``(positions, channels)`` tiles, zero outside."""
    base = feat_b + (y0 * sf_h + x0 * sf_w)[:, None] + chan_off
    v00 = tl.load(base, mask=m00[:, None] & cmask2, other=0.0).to(tl.float32)
    v01 = tl.load(base + sf_w, mask=m01[:, None] & cmask2, other=0.0).to(tl.float32)
    v10 = tl.load(base + sf_h, mask=m10[:, None] & cmask2, other=0.0).to(tl.float32)
    v11 = tl.load(base + sf_h + sf_w, mask=m11[:, None] & cmask2, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


# ----------------------------------------------------------------------------------------------
# Kernels. The (rate, neighbour) loops load the next iteration's parameters (``following``)
# before the current gathers are issued: hand pipelining, see the module docstring.


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
    tile, samples = _program_tile(
        rates_ptr, walks_ptr, weights_ptr, (swk_b, swk_q, swk_k, swk_d, swk_h, swk_w),
        (swt_b, swt_q, swt_g, swt_k, swt_h, swt_w), H, W, CG, G, CHUNKS, TILE_H, TILE_W, BLOCK_C)
    _, b64, _, py, px, pmask, chan, cmask2 = tile
    acc = tl.full([TILE_H * TILE_W, BLOCK_C], 0.0, tl.float32)
    feat_b, chan_off = _channel_rows(feat_ptr, b64, chan, sf_b, sf_c)
    params = _sample_params(0, S, samples, KS, HAS_WALKS, True)
    for it in range(S * (KS * KS)):
        sy, sx, wgt, params = _sample_step(it, params, samples, tile, H, W, S, KS, HAS_WALKS, True)
        if HAS_WALKS:
            y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
            v00, v01, v10, v11 = _load_corners(feat_b, chan_off, y0, x0, sf_h, sf_w,
                                               m00, m01, m10, m11, cmask2)
            wy0, c01, wy1, c11 = _bilinear_weights(wgt, ly, lx)
            acc += (wy0 - c01)[:, None] * v00
            acc += c01[:, None] * v01
            acc += (wy1 - c11)[:, None] * v10
            acc += c11[:, None] * v11
        else:
            yi, xi, valid = _nearest(sy, sx, H, W, pmask)
            v = _load_rows(feat_b, chan_off, yi, xi, sf_h, sf_w, valid, cmask2)
            acc += wgt[:, None] * v
    out_ptrs = _tile_ptrs(out_ptr, b64, chan, py, px, so_b, so_c, so_h, so_w)
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
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < total
    hw = H * W
    p = offs % hw
    qk = (offs // hw) % (S * (KS * KS))
    b = offs // (hw * S * (KS * KS))
    _, k, py, px, rate, dy, dx = _sample_walk(p, qk, valid, rates_ptr,
                                              walks_ptr + b.to(tl.int64) * swk_b,
                                              (swk_q, swk_k, swk_d, swk_h, swk_w), W, KS)
    sy, sx = _position(k, rate, dy, dx, py, px, H, W, KS, True)
    y0, x0, _, _ = _cell(sy, sx)
    cells = (H + 1) * (W + 1)
    inside = (y0 >= -1) & (y0 < H) & (x0 >= -1) & (x0 < W)
    key = tl.where(inside, (y0 + 1) * (W + 1) + (x0 + 1), cells)
    tl.store(keys_ptr + offs, b * (cells + 1) + key, mask=valid)


@triton.jit
def _gather_relation(j, start, end, tile, samples, order_ptr, go_b, chan_go, sgo_h, sgo_w,
                     H, W, S, RY: tl.constexpr, RX: tl.constexpr, KS: tl.constexpr):
    """``coef · grad_out[sample]`` of the ``j``-th sample whose corner (RY, RX) is the target.

    ``start``/``end`` bound, per target pixel, the sorted samples whose top-left corner is
    ``(ty - RY, tx - RX)``; the sample's position is recomputed exactly as in the forward.
    """
    b, _, _, ty, tx, tmask, _, cmask2 = tile
    rates_ptr, walk_b, weight_bg, _, _, _, swk, swt = samples
    swt_q, swt_k, swt_h, swt_w = swt
    idx = start + j
    valid = tmask & (idx < end)
    sid = tl.load(order_ptr + idx, mask=valid, other=0)
    hw = H * W
    local = sid - b * (S * (KS * KS) * hw)
    q, k, py, px, rate, dy, dx = _sample_walk(local % hw, local // hw, valid, rates_ptr, walk_b,
                                              swk, W, KS)
    wgt = tl.load(weight_bg + q * swt_q + k * swt_k + py * swt_h + px * swt_w, mask=valid,
                  other=0.0).to(tl.float32)
    sy, sx = _position(k, rate, dy, dx, py, px, H, W, KS, True)
    y0, x0, ly, lx = _cell(sy, sx)
    hit = valid & (y0 == ty - RY) & (x0 == tx - RX)
    if RY == 1:
        wy = ly
    else:
        wy = 1.0 - ly
    if RX == 1:
        wx = lx
    else:
        wx = 1.0 - lx
    coef = wgt * wy * wx
    go = _load_rows(go_b, chan_go, py, px, sgo_h, sgo_w, hit, cmask2)
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
    tile, samples = _program_tile(
        rates_ptr, walks_ptr, weights_ptr, (swk_b, swk_q, swk_k, swk_d, swk_h, swk_w),
        (swt_b, swt_q, swt_g, swt_k, swt_h, swt_w), H, W, CG, G, CHUNKS, TILE_H, TILE_W, BLOCK_C)
    b, b64, _, ty, tx, tmask, chan, cmask2 = tile
    go_b, chan_go = _channel_rows(gout_ptr, b64, chan, sgo_b, sgo_c)
    acc = tl.full([TILE_H * TILE_W, BLOCK_C], 0.0, tl.float32)
    if HAS_WALKS:
        n_max = tl.load(tile_max_ptr + b * tl.num_programs(0) + tl.program_id(0))
        # (start, end) of the sample lists of the cells whose corner 00, 01, 10, 11 is t
        cell = b * ((H + 1) * (W + 1) + 1) + (ty + 1) * (W + 1) + (tx + 1)
        lists = ((tl.load(starts_ptr + cell, mask=tmask, other=0),
                  tl.load(starts_ptr + cell + 1, mask=tmask, other=0)),
                 (tl.load(starts_ptr + cell - 1, mask=tmask, other=0),
                  tl.load(starts_ptr + cell, mask=tmask, other=0)),
                 (tl.load(starts_ptr + cell - (W + 1), mask=tmask, other=0),
                  tl.load(starts_ptr + cell - W, mask=tmask, other=0)),
                 (tl.load(starts_ptr + cell - (W + 2), mask=tmask, other=0),
                  tl.load(starts_ptr + cell - (W + 1), mask=tmask, other=0)))
        for j in range(n_max):
            for corner in tl.static_range(4):
                start, end = lists[corner]
                acc += _gather_relation(j, start, end, tile, samples, order_ptr, go_b, chan_go,
                                        sgo_h, sgo_w, H, W, S, corner // 2, corner % 2, KS)
    else:
        KK: tl.constexpr = KS * KS
        weight_bg = samples[2]  # the weights of image b, group g
        for it in range(S * KK):
            q = it // KK
            k = it - q * KK
            rate = tl.load(rates_ptr + q)
            py = ty - (k // KS - KS // 2) * rate
            px = tx - (k % KS - KS // 2) * rate
            valid = _inside(py, px, H, W, tmask)
            wgt = tl.load(weight_bg + q * swt_q + k * swt_k + py * swt_h + px * swt_w,
                          mask=valid, other=0.0).to(tl.float32)
            acc += wgt[:, None] * _load_rows(go_b, chan_go, py, px, sgo_h, sgo_w, valid, cmask2)
    out_ptrs = _tile_ptrs(gfeat_ptr, b64, chan, ty, tx, sgf_b, sgf_c, sgf_h, sgf_w)
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
    tile, samples = _program_tile(
        rates_ptr, walks_ptr, weights_ptr, (swk_b, swk_q, swk_k, swk_d, swk_h, swk_w),
        (swt_b, swt_q, swt_g, swt_k, swt_h, swt_w), H, W, CG, G, CHUNKS, TILE_H, TILE_W, BLOCK_C)
    _, b64, _, py, px, pmask, chan, cmask2 = tile
    gfeat_b, chan_off = _channel_rows(gfeat_ptr, b64, chan, sgf_b, 1)
    go = _load_tile(_tile_ptrs(gout_ptr, b64, chan, py, px, sgo_b, sgo_c, sgo_h, sgo_w), pmask,
                    cmask2)
    params = _sample_params(0, S, samples, KS, HAS_WALKS, True)
    for it in range(S * (KS * KS)):
        sy, sx, wgt, params = _sample_step(it, params, samples, tile, H, W, S, KS, HAS_WALKS, True)
        if HAS_WALKS:
            y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
            gbase = gfeat_b + (y0 * sgf_h + x0 * sgf_w)[:, None] + chan_off
            wy0, c01, wy1, c11 = _bilinear_weights(wgt, ly, lx)
            tl.atomic_add(gbase, (wy0 - c01)[:, None] * go,
                          mask=m00[:, None] & cmask2, sem="relaxed")
            tl.atomic_add(gbase + sgf_w, c01[:, None] * go,
                          mask=m01[:, None] & cmask2, sem="relaxed")
            tl.atomic_add(gbase + sgf_h, (wy1 - c11)[:, None] * go,
                          mask=m10[:, None] & cmask2, sem="relaxed")
            tl.atomic_add(gbase + sgf_h + sgf_w, c11[:, None] * go,
                          mask=m11[:, None] & cmask2, sem="relaxed")
        else:
            yi, xi, valid = _nearest(sy, sx, H, W, pmask)
            tl.atomic_add(gfeat_b + (yi * sgf_h + xi * sgf_w)[:, None] + chan_off,
                          wgt[:, None] * go, mask=valid[:, None] & cmask2, sem="relaxed")


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
    tile, samples = _program_tile(
        rates_ptr, walks_ptr, weights_ptr, (swk_b, swk_q, swk_k, swk_d, swk_h, swk_w),
        (swt_b, swt_q, swt_g, swt_k, swt_h, swt_w), H, W, CG, G, CHUNKS, TILE_H, TILE_W, BLOCK_C)
    _, b64, g, py, px, pmask, chan, cmask2 = tile
    feat_b, chan_off = _channel_rows(feat_ptr, b64, chan, sf_b, sf_c)
    flat_pos = py * W + px
    gwalk_b = gwalk_ptr + b64 * sgk_b + flat_pos
    gweight_bg = gweight_ptr + b64 * sgt_b + g * sgt_g + flat_pos
    go = _load_tile(_tile_ptrs(gout_ptr, b64, chan, py, px, sgo_b, sgo_c, sgo_h, sgo_w), pmask,
                    cmask2)
    params = _sample_params(0, S, samples, KS, HAS_WALKS, NEED_WALK)
    for it in range(S * KK):
        sy, sx, wgt, params = _sample_step(it, params, samples, tile, H, W, S, KS, HAS_WALKS,
                                           NEED_WALK)
        q = it // KK
        k = it - q * KK
        gw_ptrs = gweight_bg + q * sgt_q + k * sgt_k
        if HAS_WALKS:
            y0, x0, ly, lx, m00, m01, m10, m11 = _corners(sy, sx, H, W, pmask)
            base = feat_b + (y0 * sf_h + x0 * sf_w)[:, None] + chan_off
            d00 = _sum(go * _load_tile(base, m00, cmask2), axis=1)
            d01 = _sum(go * _load_tile(base + sf_w, m01, cmask2), axis=1)
            d10 = _sum(go * _load_tile(base + sf_h, m10, cmask2), axis=1)
            d11 = _sum(go * _load_tile(base + sf_h + sf_w, m11, cmask2), axis=1)
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
            yi, xi, valid = _nearest(sy, sx, H, W, pmask)
            v = _load_rows(feat_b, chan_off, yi, xi, sf_h, sf_w, valid, cmask2)
            gw = _sum(go * v, axis=1)
            if ATOMIC_WEIGHT:
                tl.atomic_add(gw_ptrs, gw, mask=pmask, sem="relaxed")
            else:
                tl.store(gw_ptrs, gw, mask=pmask)
