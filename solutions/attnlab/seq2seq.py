"""Attention in recurrent sequence-to-sequence models: one decoder step at a time.

Taught in notebooks/03_seq2seq_attention.ipynb.

An RNN encoder reads the source into S states (the *annotations*) ``encoder_outputs`` ``(B, S, D_h)``.
At every step the decoder compares its state ``decoder_state`` ``(B, D_s)`` with each of them, turns the
scores into weights ``(B, S)`` over the source positions, and reads the *context* ``(B, D_h)``, the
weighted average of the encoder states. Bahdanau et al. (2014) score with a small MLP (additive attention)
from the previous decoder state; Luong et al. (2015) score from the current state with a dot product, a
bilinear form or an MLP, and restrict the window in their local variant; coverage (Tu et al. 2016; in the
plain-sum form of See et al. 2017, built here) remembers where the decoder has already looked.

Conventions (every function): projections are written ``x @ W``; ``mask`` is boolean ``(B, S)``, True
where a source position may be attended to (padding is False); a row with no kept position gets zero
weights and a zero context, never NaN; outputs keep the inputs' dtype (float32 in, float32 out).
"""
import numpy as np

from attnlab.softmax import masked_softmax, softmax
### BEGIN SOLUTION


def _weights_and_context(scores, encoder_outputs, mask):
    """Masked softmax over the S source positions, then the weighted average of the encoder states.

    scores (B, S), encoder_outputs (B, S, D_h), mask (B, S) or None -> (context (B, D_h), weights (B, S)).
    """
    weights = softmax(scores) if mask is None else masked_softmax(scores, mask)  # (B, S)
    context = (weights[:, None, :] @ encoder_outputs)[:, 0, :]  # (B, 1, S) @ (B, S, D_h) -> (B, D_h)
    return context, weights
### END SOLUTION


def bahdanau_attention(decoder_state, encoder_outputs, W_s, W_h, w_v, mask=None):
    """Additive (Bahdanau) attention for one decoder step.

    Parameters
    ----------
    decoder_state : ndarray, shape (B, D_s)
        The decoder state the scores are computed from. Bahdanau et al. use the *previous* state
        s_{t-1}; which state you pass is the caller's choice.
    encoder_outputs : ndarray, shape (B, S, D_h)
        The encoder states h_1..h_S (for a bidirectional encoder, forward and backward concatenated).
    W_s : ndarray, shape (D_s, A)
        Projection of the decoder state into the A-dim hidden layer of the scoring MLP.
    W_h : ndarray, shape (D_h, A)
        Projection of the encoder states.
    w_v : ndarray, shape (A,)
        Output vector of the MLP: one score per position.
    mask : ndarray of bool, shape (B, S), optional
        True where a source position may be attended to.

    Returns
    -------
    context : ndarray, shape (B, D_h)
        ``sum_j weights[:, j] * encoder_outputs[:, j]``; zero for a fully masked row.
    weights : ndarray, shape (B, S)
        Softmax of the scores over the kept positions; exactly 0 where masked.

    Notes
    -----
    .. math:: e_j = w_v^\\top \\tanh(s W_s + h_j W_h),\\qquad
              \\alpha = \\mathrm{softmax}(e),\\qquad c = \\sum_j \\alpha_j h_j

    ``encoder_outputs @ W_h`` does not depend on the decoder step: a real decoder computes it once per
    source sentence and reuses it at every step.
    """
    ### BEGIN HINTS
    # 1. decoder_state @ W_s is (B, A) and encoder_outputs @ W_h is (B, S, A): add them with [:, None, :].
    # 2. tanh of that sum, then @ w_v gives the scores (B, S); masked_softmax (notebook 01) gives the weights.
    # 3. context = weights (B, 1, S) @ encoder_outputs (B, S, D_h) -> (B, 1, D_h) -> (B, D_h).
    ### END HINTS
    ### BEGIN SOLUTION
    query = decoder_state @ W_s  # (B, D_s) @ (D_s, A) -> (B, A)
    keys = encoder_outputs @ W_h  # (B, S, D_h) @ (D_h, A) -> (B, S, A)
    scores = np.tanh(query[:, None, :] + keys) @ w_v  # (B, S, A) @ (A,) -> (B, S)
    return _weights_and_context(scores, encoder_outputs, mask)
    ### END SOLUTION


def luong_attention(decoder_state, encoder_outputs, method, params, mask=None):
    """Luong attention for one decoder step, with the "dot", "general" or "concat" score.

    Parameters
    ----------
    decoder_state : ndarray, shape (B, D_s)
        The decoder state the scores are computed from (Luong et al. use the *current* state h_t).
    encoder_outputs : ndarray, shape (B, S, D_h)
        The encoder states.
    method : {"dot", "general", "concat"}
        "dot": ``s . h_j`` (needs D_s == D_h; ``params`` is not used).
        "general": ``s W h_j`` with ``params["W"]`` of shape (D_s, D_h).
        "concat": ``tanh([s; h_j] W) . v`` with ``params["W"]`` of shape (D_s + D_h, A) (its first D_s
        rows multiply the decoder state) and ``params["v"]`` of shape (A,).
    params : dict of ndarray
        The method's parameters (may be empty for "dot").
    mask : ndarray of bool, shape (B, S), optional
        True where a source position may be attended to.

    Returns
    -------
    context : ndarray, shape (B, D_h)
    weights : ndarray, shape (B, S)
        Zero where masked; a fully masked row gives zero weights and a zero context.

    Raises
    ------
    ValueError
        If ``method`` is not one of "dot", "general", "concat".

    Notes
    -----
    .. math:: \\mathrm{score}(s, h_j) = \\begin{cases} s^\\top h_j & \\text{dot}\\\\
              s^\\top W h_j & \\text{general}\\\\ v^\\top \\tanh(W^\\top [s; h_j]) & \\text{concat}\\end{cases}

    "concat" is the additive score again: ``[s; h_j] W = s W[:D_s] + h_j W[D_s:]``.
    """
    ### BEGIN HINTS
    # 1. dot: (B, S, D_h) @ (B, D_h, 1) -> (B, S, 1); general: project the state first, s @ W is (B, D_h).
    # 2. concat: split W into W[:D_s] (D_s, A) and W[D_s:] (D_h, A) instead of building (B, S, D_s + D_h).
    # 3. Raise ValueError for any other method; the weights and context are computed as in bahdanau_attention.
    ### END HINTS
    ### BEGIN SOLUTION
    D_s = decoder_state.shape[-1]
    if method == "dot":
        query = decoder_state  # (B, D_s) with D_s == D_h
        scores = (encoder_outputs @ query[:, :, None])[:, :, 0]  # (B, S, D_h) @ (B, D_h, 1) -> (B, S)
    elif method == "general":
        query = decoder_state @ params["W"]  # (B, D_s) @ (D_s, D_h) -> (B, D_h)
        scores = (encoder_outputs @ query[:, :, None])[:, :, 0]  # (B, S)
    elif method == "concat":
        W, v = params["W"], params["v"]
        hidden = (decoder_state @ W[:D_s])[:, None, :] + encoder_outputs @ W[D_s:]  # (B, 1, A) + (B, S, A)
        scores = np.tanh(hidden) @ v  # (B, S, A) @ (A,) -> (B, S)
    else:
        raise ValueError(f"unknown method {method!r}: expected 'dot', 'general' or 'concat'")
    return _weights_and_context(scores, encoder_outputs, mask)
    ### END SOLUTION


def local_p_attention(decoder_state, encoder_outputs, W_p, v_p, window, mask=None):
    """Luong's local-p attention: a predicted centre, a window around it, a Gaussian on top.

    Parameters
    ----------
    decoder_state : ndarray, shape (B, D_s)
        The current decoder state; the scores are dot products, so D_s == D_h.
    encoder_outputs : ndarray, shape (B, S, D_h)
        The encoder states, at positions 0..S-1.
    W_p : ndarray, shape (D_s, A)
    v_p : ndarray, shape (A,)
        The centre predictor: ``p = (S - 1) * sigmoid(tanh(s W_p) . v_p)``, a real number in [0, S - 1],
        not rounded.
    window : int
        Half-width D >= 1 of the window ``[p - window, p + window]`` (both ends included) and of the
        Gaussian: sigma = window / 2.
    mask : ndarray of bool, shape (B, S), optional
        True where a source position may be attended to.

    Returns
    -------
    context : ndarray, shape (B, D_h)
    weights : ndarray, shape (B, S)
        0 outside the window and where masked. Inside: the softmax of the dot scores over the kept
        positions of the window, times ``exp(-(j - p)^2 / (2 sigma^2))``, *not* renormalised (Luong
        et al. 2015 do not renormalise either), so a row sums to less than 1. A row with no kept position
        in its window gives zero weights and a zero context.

    Notes
    -----
    .. math:: p = (S - 1)\\,\\sigma(v_p^\\top \\tanh(W_p^\\top s)),\\qquad
              a_j = \\mathrm{softmax}_{|j - p| \\le D}(s^\\top h_j)\\,
              \\exp\\!\\left(-\\frac{(j - p)^2}{2 (D/2)^2}\\right)

    The paper writes ``S * sigmoid(...)``; with 0-based positions 0..S-1, ``S - 1`` keeps the centre on
    a valid position.
    """
    ### BEGIN HINTS
    # 1. p = (S - 1) / (1 + exp(-tanh(s @ W_p) @ v_p)) is (B,); distance = positions (S,) - p[:, None] is (B, S).
    # 2. Keep |distance| <= window (and the mask), softmax the dot scores over what is kept, then multiply
    #    by the Gaussian with sigma = window / 2. Do not renormalise.
    # 3. np.arange(S) is int64: int64 - float32 gives float64; make the positions in the input's dtype.
    ### END HINTS
    ### BEGIN SOLUTION
    S = encoder_outputs.shape[1]
    dtype = encoder_outputs.dtype
    z = np.tanh(decoder_state @ W_p) @ v_p  # (B, D_s) @ (D_s, A) -> (B, A) -> (B,)
    p = (S - 1) * 0.5 * (1 + np.tanh(z / 2))  # (B,) sigmoid(z) = (1 + tanh(z / 2)) / 2 never overflows
    distance = np.arange(S, dtype=dtype)[None, :] - p[:, None]  # (B, S)
    keep = np.abs(distance) <= window  # (B, S) inside the window, both ends included
    if mask is not None:
        keep = keep & mask
    scores = (encoder_outputs @ decoder_state[:, :, None])[:, :, 0]  # (B, S) dot scores
    sigma = window / 2
    gaussian = np.exp(-distance ** 2 / (2 * sigma ** 2))  # (B, S), 1 at the centre
    weights = masked_softmax(scores, keep) * gaussian  # (B, S), 0 outside the window
    context = (weights[:, None, :] @ encoder_outputs)[:, 0, :]  # (B, D_h)
    return context, weights
    ### END SOLUTION


def coverage_attention(decoder_state, encoder_outputs, coverage, W_s, W_h, w_c, w_v, mask=None):
    """Additive attention that also sees the coverage vector (See et al. 2017).

    Parameters
    ----------
    decoder_state : ndarray, shape (B, D_s)
    encoder_outputs : ndarray, shape (B, S, D_h)
    coverage : ndarray, shape (B, S)
        How much attention each source position has received so far: the sum of the weights of the
        previous decoder steps (zeros at the first step).
    W_s : ndarray, shape (D_s, A)
    W_h : ndarray, shape (D_h, A)
    w_c : ndarray, shape (A,)
        How the coverage of a position enters the hidden layer of the scoring MLP.
    w_v : ndarray, shape (A,)
    mask : ndarray of bool, shape (B, S), optional
        True where a source position may be attended to.

    Returns
    -------
    context : ndarray, shape (B, D_h)
    weights : ndarray, shape (B, S)
        Zero where masked; a fully masked row gives zero weights and a zero context.

    Notes
    -----
    .. math:: e_j = w_v^\\top \\tanh(s W_s + h_j W_h + c_j w_c)

    The caller updates the coverage after the step: ``coverage + weights``. With a zero coverage this is
    ``bahdanau_attention``.
    """
    ### BEGIN HINTS
    # 1. As in bahdanau_attention, with one more (B, S, A) term inside the tanh: coverage[:, :, None] * w_c.
    # 2. scores (B, S) -> masked softmax -> weights (B, S) -> context (B, D_h).
    ### END HINTS
    ### BEGIN SOLUTION
    hidden = ((decoder_state @ W_s)[:, None, :]  # (B, 1, A)
              + encoder_outputs @ W_h  # (B, S, A)
              + coverage[:, :, None] * w_c)  # (B, S, 1) * (A,) -> (B, S, A)
    scores = np.tanh(hidden) @ w_v  # (B, S)
    return _weights_and_context(scores, encoder_outputs, mask)
    ### END SOLUTION


def coverage_loss(attention_history):
    """See et al.'s (2017) coverage loss: attending again to what is already covered costs.

    Parameters
    ----------
    attention_history : ndarray, shape (B, T, S)
        The attention weights of T decoder steps over S source positions.

    Returns
    -------
    loss : ndarray, shape (B,)
        ``sum_t sum_j min(a_t[j], c_t[j])`` where ``c_t = a_0 + ... + a_{t-1}`` is the coverage *before*
        step t (c_0 = 0, so the first step costs nothing). Same dtype as the input.

    Notes
    -----
    .. math:: \\mathrm{covloss} = \\sum_t \\sum_j \\min(a^t_j, c^t_j),\\qquad c^t = \\sum_{t' < t} a^{t'}

    Each term is at most ``a_t[j]``, so the loss of a step is at most 1: a step pays in full only when
    it attends where earlier steps already did.
    """
    ### BEGIN HINTS
    # 1. np.cumsum over the T axis gives the coverage *including* step t; shift it by one step
    #    (a zero row first) so that c_t excludes a_t.
    # 2. np.minimum(attention_history, coverage) is (B, T, S); sum over T and S.
    ### END HINTS
    ### BEGIN SOLUTION
    history = np.asarray(attention_history)
    running = np.cumsum(history, axis=1)  # (B, T, S): a_0 + ... + a_t
    coverage = np.concatenate([np.zeros_like(history[:, :1]), running[:, :-1]], axis=1)  # c_t: steps before t
    return np.minimum(history, coverage).sum(axis=(1, 2))  # (B,)
    ### END SOLUTION


def sample_hard_attention(weights, rng):
    """Hard (stochastic) attention: sample one position per row, with probability its weight.

    Parameters
    ----------
    weights : ndarray of float, shape (..., S)
        Attention weights: each row is a probability distribution over the S positions (non-negative,
        summing to 1 up to rounding). A row of zeros (a fully masked query) is allowed.
    rng : numpy.random.Generator
        The only source of randomness (never ``np.random``'s global state nor a generator seeded
        inside), so that the same generator state gives the same sample.

    Returns
    -------
    one_hot : ndarray, same shape and dtype as weights
        1 at the sampled position of each row, 0 elsewhere; a row of zeros stays all zeros. A position
        of weight 0 is never sampled.

    Notes
    -----
    With :math:`z \\sim \\mathrm{Categorical}(\\alpha)`, the hard context :math:`h_z` satisfies
    :math:`\\mathbb{E}[h_z] = \\sum_j \\alpha_j h_j`: its expectation is the soft context. Sampling is not
    differentiable, which is why Xu et al. (2015) train hard attention with REINFORCE (Williams 1992).
    """
    ### BEGIN HINTS
    # 1. Inverse CDF: cdf = np.cumsum(weights, axis=-1); u = rng.random(weights.shape[:-1] + (1,)) * cdf[..., -1:].
    # 2. The sample is the first position whose cdf exceeds u: (cdf <= u).sum(axis=-1), shape (...,).
    # 3. One-hot it with np.arange(S) == index[..., None] in the weights' dtype; zero rows stay zero.
    ### END HINTS
    ### BEGIN SOLUTION
    weights = np.asarray(weights)
    S = weights.shape[-1]
    cdf = np.cumsum(weights, axis=-1, dtype=np.float64)  # (..., S), cdf[..., -1] is the row total
    total = cdf[..., -1:]  # (..., 1)
    u = rng.random(weights.shape[:-1] + (1,)) * total  # (..., 1), uniform in [0, total)
    index = np.minimum((cdf <= u).sum(axis=-1), S - 1)  # (...,) first position with cdf > u
    one_hot = (np.arange(S) == index[..., None]) & (total > 0)  # (..., S); a zero row samples nothing
    return one_hot.astype(weights.dtype)
    ### END SOLUTION
