"""Attention beyond text: speech, graphs, recommendation, documents and pairs of sequences.

Taught in notebooks/11_beyond_text.ipynb.

The same three steps (score, normalise, average) reappear in every field with a different answer to
three questions: *what is scored against what*, *over which set the weights are normalised*, and
*whether they are normalised at all*.

* Speech (Chorowski et al. 2015): the score of an input frame also sees where the previous step
  attended, through a convolution of the previous alignment (``location_sensitive_scores``).
* Graphs (Velickovic et al. 2018): each node attends over its neighbours only (``gat_layer``).
* Recommendation (Zhou et al. 2018, Deep Interest Network): a candidate item weighs the items of a
  user's history with an MLP and does *not* normalise (``target_attention_pooling``).
* Documents (Yang et al. 2016): words are pooled into sentences, sentences into a document, each
  level with its own learned context vector (``hierarchical_attention_pool``).
* Pairs of sequences (Xiong et al. 2017; Lu et al. 2016): one affinity matrix read in both
  directions (``co_attention``).

Conventions (every function): projections are written ``x @ W``; masks are boolean, True where an
item may be attended to (padding is False); a row with nothing to attend to gets zero weights and a
zero output, never NaN; outputs keep the inputs' dtype (float32 in, float32 out), so parameters come
in the inputs' dtype too.
"""
import numpy as np

from attnlab.softmax import masked_softmax


def location_sensitive_scores(decoder_state, encoder_outputs, prev_weights, W, V, U, filters, w, b):
    """Location-sensitive attention scores (Chorowski et al. 2015) for one decoder step.

    Parameters
    ----------
    decoder_state : ndarray, shape (B, D_s)
        The previous decoder state s_{i-1}.
    encoder_outputs : ndarray, shape (B, S, D_h)
        The encoded input frames h_1..h_S.
    prev_weights : ndarray, shape (B, S)
        The alignment of the previous decoder step, alpha_{i-1} (zeros, or a one-hot on frame 0, before
        the first step: the caller's choice).
    W : ndarray, shape (D_s, A)
        Projection of the decoder state into the A-dim hidden layer of the scoring MLP.
    V : ndarray, shape (D_h, A)
        Projection of the encoder states.
    U : ndarray, shape (K, A)
        Projection of the K location features.
    filters : ndarray, shape (K, R)
        K convolution filters of odd width R, centred on the frame being scored.
    w : ndarray, shape (A,)
        Output vector of the MLP: one score per frame.
    b : ndarray, shape (A,)
        Bias of the hidden layer.

    Returns
    -------
    scores : ndarray, shape (B, S)
        The energies e_{i,j}, before any normalisation (a softmax, or Chorowski et al.'s sharpened,
        windowed or smoothed variants, comes next; masking padded frames belongs to that step).

    Raises
    ------
    ValueError
        If the filter width R is even (a centred filter needs an odd width).

    Notes
    -----
    .. math:: f_{j,k} = \\sum_{r=0}^{R-1} F_{k,r}\\, \\alpha_{i-1,\\, j + r - (R-1)/2},\\qquad
              e_{i,j} = w^\\top \\tanh(s_{i-1} W + h_j V + f_j U + b)

    with alpha = 0 outside frames 0..S-1 (zero padding). This is a *cross-correlation*, what
    ``torch.nn.functional.conv1d(alpha, F, padding=(R - 1) // 2)`` computes and what deep-learning
    code calls a convolution; ``np.convolve`` flips the filter (a true convolution).
    """
    ### BEGIN HINTS
    # 1. Zero-pad prev_weights by (R - 1) // 2 frames on both sides: (B, S + R - 1); its slice [:, r:r + S]
    #    holds alpha_{j + r - (R - 1) // 2} for every frame j. Stack the R slices into windows (B, S, R).
    # 2. features = windows @ filters.T is (B, S, K); then (s @ W)[:, None, :] + h @ V + features @ U + b is
    #    (B, S, A).
    # 3. scores = tanh(that) @ w, (B, S). Raise ValueError first when R is even.
    ### END HINTS
    ### BEGIN SOLUTION
    K, R = filters.shape
    if R % 2 == 0:
        raise ValueError(f"the filter width R must be odd to centre the filters, got R = {R}")
    S = prev_weights.shape[-1]
    half = (R - 1) // 2
    padded = np.pad(prev_weights, ((0, 0), (half, half)))  # (B, S + R - 1), zeros beyond the ends
    windows = np.stack([padded[:, r:r + S] for r in range(R)], axis=-1)  # (B, S, R): alpha_{j + r - half}
    features = windows @ filters.T  # (B, S, R) @ (R, K) -> (B, S, K) location features f_j
    hidden = (decoder_state @ W)[:, None, :] + encoder_outputs @ V + features @ U + b  # (B, S, A)
    return np.tanh(hidden) @ w  # (B, S, A) @ (A,) -> (B, S)
    ### END SOLUTION


def gat_layer(h, adjacency, W, a, negative_slope=0.2, concat=True):
    """One graph attention layer (Velickovic et al. 2018) with H heads, on one graph of N nodes.

    Parameters
    ----------
    h : ndarray, shape (N, D_in)
        Node features.
    adjacency : ndarray of bool, shape (N, N)
        ``adjacency[i, j]`` is True when node i attends to node j (j is a neighbour of i; for a directed
        graph, an edge j -> i). Used exactly as given: the function adds **no self-loops**. Velickovic
        et al. let a node attend to itself, so pass ``adjacency | np.eye(N, dtype=bool)`` to follow
        them. A node with no neighbour gets zero weights and a zero output.
    W : ndarray, shape (H, D_in, D_out)
        One projection per head: z = h @ W[head], (N, D_out).
    a : ndarray, shape (H, 2 * D_out)
        One attention vector per head; its first D_out entries multiply the attending node's z_i, the
        last D_out the neighbour's z_j.
    negative_slope : float, optional
        Slope of the LeakyReLU for negative scores. Default 0.2, the paper's.
    concat : bool, optional
        True (hidden layers in the paper): concatenate the heads, head 0 first. False (the paper's
        output layer): average them.

    Returns
    -------
    out : ndarray, shape (N, H * D_out) if concat else (N, D_out)
        ``sum_j weights[head, i, j] * z[head, j]`` per head, concatenated or averaged. No nonlinearity is
        applied (the paper's ELU, or the softmax of an output layer, comes after).
    weights : ndarray, shape (H, N, N)
        ``weights[head, i, j]``: how much node i attends to node j; zero where adjacency is False, each
        row with a neighbour sums to 1.

    Notes
    -----
    .. math:: z_i = h_i W,\\quad e_{ij} = \\mathrm{LeakyReLU}(a^\\top [z_i \\Vert z_j]),\\quad
              \\alpha_{ij} = \\mathrm{softmax}_{j \\in \\mathcal{N}(i)}(e_{ij}),\\quad
              h'_i = \\sum_{j \\in \\mathcal{N}(i)} \\alpha_{ij} z_j

    ``a^T [z_i || z_j] = a_1 . z_i + a_2 . z_j``: two (N,) vectors per head and one broadcast sum, never
    the (N, N, 2 D_out) tensor of all pairs.
    """
    ### BEGIN HINTS
    # 1. z = h @ W is (H, N, D_out) (matmul broadcasts over heads); z @ a[:, :D_out, None] gives the (H, N, 1)
    #    part of the attending node, z @ a[:, D_out:, None] the neighbour's; e = first + second.swapaxes(1, 2).
    # 2. LeakyReLU: np.where(e > 0, e, negative_slope * e); masked_softmax(e, adjacency) over j (the last axis).
    # 3. out = weights @ z, (H, N, D_out); concat: out.transpose(1, 0, 2).reshape(N, -1); else out.mean(axis=0).
    ### END HINTS
    ### BEGIN SOLUTION
    H, _, D_out = W.shape
    N = h.shape[0]
    z = h @ W  # (N, D_in) @ (H, D_in, D_out) -> (H, N, D_out)
    own = z @ a[:, :D_out, None]  # (H, N, 1): a_1 . z_i
    neighbour = z @ a[:, D_out:, None]  # (H, N, 1): a_2 . z_j
    e = own + neighbour.transpose(0, 2, 1)  # (H, N, 1) + (H, 1, N) -> (H, N, N), e[head, i, j]
    e = np.where(e > 0, e, negative_slope * e)  # LeakyReLU
    weights = masked_softmax(e, adjacency)  # (H, N, N), over the neighbours j of each i
    out = weights @ z  # (H, N, N) @ (H, N, D_out) -> (H, N, D_out)
    if concat:
        return out.transpose(1, 0, 2).reshape(N, H * D_out), weights  # (N, H, D_out) -> (N, H * D_out)
    return out.mean(axis=0), weights
    ### END SOLUTION


def target_attention_pooling(candidate, history, mask, params):
    """Deep Interest Network's attention pooling (Zhou et al. 2018): a candidate item weighs a user's history.

    Parameters
    ----------
    candidate : ndarray, shape (B, D)
        The embedding c of the item being scored (the ad, the next video).
    history : ndarray, shape (B, S, D)
        Embeddings h_1..h_S of the user's past behaviours (clicks, purchases), padded to S.
    mask : ndarray of bool, shape (B, S), or None
        True for a real behaviour, False for padding. None keeps every item.
    params : dict of ndarray
        The activation unit, an MLP with one hidden layer of width A:
        ``"W1"`` (4 D, A) and ``"b1"`` (A,); ``"alpha"`` (A,), the PReLU slopes for negative inputs;
        ``"w2"`` (A,) and ``"b2"`` (a float), the output unit. Arrays in the dtype of ``history``.

    Returns
    -------
    pooled : ndarray, shape (B, D)
        The user's interest with respect to the candidate, ``sum_j weights[:, j] * h_j``. A user with no
        behaviour gets the zero vector.
    weights : ndarray, shape (B, S)
        The activation unit's outputs, **not normalised**: no softmax, no division by their sum, any sign.
        Exactly 0 where masked, so padded items contribute nothing.

    Notes
    -----
    .. math:: x_j = [h_j;\\ c;\\ h_j - c;\\ h_j \\odot c],\\quad
              w_j = w_2^\\top \\mathrm{PReLU}(x_j W_1 + b_1) + b_2,\\quad
              v_U(c) = \\sum_j w_j h_j

    The paper's figure feeds the activation unit the two embeddings and their "out product" (usually read
    as an outer product); the code released with it feeds [c, h, c - h, c * h], the element-wise form above
    up to an order and a sign that W1 absorbs, which is cheaper (4 D inputs instead of D^2 + 2 D). That
    code also applies a scaled softmax, which the paper drops.
    Without a softmax, a user with twice as many relevant behaviours gets a pooled vector about twice as
    large: the sum keeps the *intensity* of an interest, which Zhou et al. wanted the model to see.
    """
    ### BEGIN HINTS
    # 1. Broadcast the candidate to (B, S, D) (candidate[:, None, :]) and concatenate [h, c, h - c, h * c]
    #    on the last axis, in that order: (B, S, 4 D).
    # 2. x @ W1 + b1 is (B, S, A); PReLU is np.where(x > 0, x, alpha * x); @ w2 + b2 gives weights (B, S).
    # 3. Zero the masked weights (np.where), then pooled = sum over S of weights[..., None] * history. No softmax.
    ### END HINTS
    ### BEGIN SOLUTION
    c = np.broadcast_to(candidate[:, None, :], history.shape)  # (B, S, D)
    x = np.concatenate([history, c, history - c, history * c], axis=-1)  # (B, S, 4 D)
    hidden = x @ params["W1"] + params["b1"]  # (B, S, A)
    hidden = np.where(hidden > 0, hidden, params["alpha"] * hidden)  # PReLU
    weights = hidden @ params["w2"] + params["b2"]  # (B, S, A) @ (A,) -> (B, S)
    if mask is not None:
        weights = np.where(mask, weights, 0).astype(weights.dtype)  # padded behaviours weigh exactly 0
    pooled = (weights[:, None, :] @ history)[:, 0, :]  # (B, 1, S) @ (B, S, D) -> (B, D)
    return pooled, weights
    ### END SOLUTION


def hierarchical_attention_pool(word_states, word_params, sentence_params, mask=None):
    """Hierarchical attention pooling (Yang et al. 2016): words into sentences, sentences into a document.

    Parameters
    ----------
    word_states : ndarray, shape (B, N, T, D)
        B documents of N sentences of T words: the annotation of every word (in Yang et al., the states
        of a bidirectional GRU run over each sentence).
    word_params : dict of ndarray
        Word-level attention: ``"W"`` (D, A_w), ``"b"`` (A_w,) and the word context vector ``"u"``
        (A_w,).
    sentence_params : dict of ndarray
        Sentence-level attention: ``"W"`` (D, A_s), ``"b"`` (A_s,) and the sentence context vector
        ``"u"`` (A_s,).
    mask : ndarray of bool, shape (B, N, T), optional
        True for a real word, False for padding. A sentence with no real word is padding at the
        sentence level too: it gets sentence weight 0. Default None: every word is real.

    Returns
    -------
    document : ndarray, shape (B, D)
        The document vector; zero for a document with no real word.
    sentence_weights : ndarray, shape (B, N)
        Attention over the sentences of each document.
    word_weights : ndarray, shape (B, N, T)
        Attention over the words of each sentence; a padding sentence's row is all zeros.

    Notes
    -----
    At each level, for items x_k (words of a sentence, or sentence vectors of a document):

    .. math:: u_k = \\tanh(x_k W + b),\\qquad \\alpha_k = \\mathrm{softmax}_k(u_k^\\top u),\\qquad
              \\mathrm{pooled} = \\sum_k \\alpha_k x_k

    The context vector u is a learned query, the same for every sentence (or document): it asks "which
    items are informative?". Yang et al. run a second bidirectional GRU over the sentence vectors before
    the sentence-level attention; here the sentence vectors are attended to directly (an encoder between
    the two levels, if any, is the caller's).
    """
    ### BEGIN HINTS
    # 1. Word level: tanh(word_states @ W + b) @ u is (B, N, T); masked_softmax over T with the mask; the
    #    sentence vectors are (word_weights[..., None, :] @ word_states)[..., 0, :], (B, N, D).
    # 2. A sentence keeps a place at the sentence level when it has a real word: mask.any(axis=-1), (B, N).
    # 3. Sentence level: the same three steps with sentence_params over N, giving the document (B, D).
    ### END HINTS
    ### BEGIN SOLUTION
    if mask is None:
        mask = np.ones(word_states.shape[:-1], dtype=bool)  # (B, N, T)
    word_scores = np.tanh(word_states @ word_params["W"] + word_params["b"]) @ word_params["u"]  # (B, N, T)
    word_weights = masked_softmax(word_scores, mask)  # (B, N, T), over the T words
    sentences = (word_weights[..., None, :] @ word_states)[..., 0, :]  # (B, N, 1, T) @ (B, N, T, D) -> (B, N, D)
    sentence_kept = mask.any(axis=-1)  # (B, N): a sentence with no real word is padding
    sentence_scores = np.tanh(sentences @ sentence_params["W"] + sentence_params["b"]) @ sentence_params["u"]
    sentence_weights = masked_softmax(sentence_scores, sentence_kept)  # (B, N), over the N sentences
    document = (sentence_weights[:, None, :] @ sentences)[:, 0, :]  # (B, 1, N) @ (B, N, D) -> (B, D)
    return document, sentence_weights, word_weights
    ### END SOLUTION


def co_attention(q_states, d_states, q_mask=None, d_mask=None):
    """Co-attention between a question and a document (Xiong et al. 2017, dynamic coattention networks).

    Parameters
    ----------
    q_states : ndarray, shape (..., L, D)
        The L question (query) word states. Xiong et al. first pass them through tanh(q W + b), to let
        the question's encoding space differ from the document's; that projection is the caller's.
    d_states : ndarray, shape (..., S, D)
        The S document word states, of the same width D.
    q_mask : ndarray of bool, shape (..., L), optional
        True for a real question word, False for padding.
    d_mask : ndarray of bool, shape (..., S), optional
        True for a real document word, False for padding.

    Returns
    -------
    q_context : ndarray, shape (..., L, D)
        For each question word, its summary of the document, C^Q = q_weights @ d_states.
    d_context : ndarray, shape (..., S, 2 D)
        For each document word, the co-attention context: the question read through the attention
        over the question, both the question words and their document summaries,
        ``d_weights @ [q_states, q_context]`` (question states first).
    q_weights : ndarray, shape (..., L, S)
        Each question word's attention over the document: the affinity's softmax over S.
    d_weights : ndarray, shape (..., S, L)
        Each document word's attention over the question: the transposed affinity's softmax over L.

    Notes
    -----
    .. math:: A = q d^\\top\\ (L, S),\\quad A^Q = \\mathrm{softmax}_S(A),\\quad
              A^D = \\mathrm{softmax}_L(A^\\top),\\quad C^Q = A^Q d,\\quad C^D = A^D [q;\\ C^Q]

    One affinity matrix serves both directions; what differs is the axis each softmax normalises over,
    so ``d_weights`` is not ``q_weights`` transposed. Only the side being attended to is masked: the
    rows of padding positions are computed like the others (the caller ignores them). Xiong et al.
    also append a learned sentinel to each sequence so a word can attend to "nothing"; not done here.
    The affinity is not scaled by 1/sqrt(D).
    """
    ### BEGIN HINTS
    # 1. affinity = q_states @ d_states.swapaxes(-1, -2) is (..., L, S): one score per (question, document) pair.
    # 2. q_weights = masked_softmax(affinity, d_mask[..., None, :]) over S; d_weights = masked_softmax of
    #    affinity.swapaxes(-1, -2), (..., S, L), with q_mask[..., None, :] over L (an all-True mask when None).
    # 3. q_context = q_weights @ d_states; d_context = d_weights @ np.concatenate([q_states, q_context], -1).
    ### END HINTS
    ### BEGIN SOLUTION
    affinity = q_states @ np.swapaxes(d_states, -1, -2)  # (..., L, D) @ (..., D, S) -> (..., L, S)
    if q_mask is None:
        q_mask = np.ones(q_states.shape[:-1], dtype=bool)  # (..., L)
    if d_mask is None:
        d_mask = np.ones(d_states.shape[:-1], dtype=bool)  # (..., S)
    q_weights = masked_softmax(affinity, np.asarray(d_mask)[..., None, :])  # (..., L, S), over S
    d_weights = masked_softmax(np.swapaxes(affinity, -1, -2), np.asarray(q_mask)[..., None, :])  # (..., S, L)
    q_context = q_weights @ d_states  # (..., L, S) @ (..., S, D) -> (..., L, D)
    d_context = d_weights @ np.concatenate([q_states, q_context], axis=-1)  # (..., S, L) @ (..., L, 2 D)
    return q_context, d_context, q_weights, d_weights
    ### END SOLUTION
