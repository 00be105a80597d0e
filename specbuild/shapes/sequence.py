"""Shape rules for torch.nn's sequence layers: RNN/LSTM/GRU and their cells,
MultiheadAttention, the Transformer layers and stacks.  Same contract as
`layers`: (output, {parameter name: shape}), pure Python."""
from __future__ import annotations

from .rearrange import nested
from .core import (FLOAT32, MAX_COUNT, REQUIRED, ShapeError, format_shape, infer, known, rank, rule,
                     same_dim, tensor)

R = REQUIRED
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _agree(type_name, names, x, y, dim, what):
    """Dim `dim` of x and y must agree, e.g. the batch of query and key."""
    try:
        same_dim(x[dim], y[dim])
    except ValueError:
        raise ShapeError(f"{type_name}: {names[0]} {format_shape(x)} and {names[1]} "
                         f"{format_shape(y)} differ in {what} (dim {dim})") from None


def _recurrent(kind):
    extra = {"proj_size": 0} if kind == "LSTM" else {"nonlinearity": "tanh"} \
        if kind == "RNN" else {}

    @rule(kind, inferred=("input_size",), input_size=R, hidden_size=R, num_layers=1,
          bias=True, batch_first=False, dropout=0.0, bidirectional=False, **extra)
    def recurrent(a, inputs):
        # x: (L, N, H_in), or (N, L, H_in) with batch_first, or unbatched (L, H_in)
        x = tensor(a.type, inputs[:1])[0]
        layout = "(N, L, H_in)" if a["batch_first"] else "(L, N, H_in)"
        batched = rank(a.type, x, 2, 3, what=f" {layout} or unbatched (L, H_in)") == 3
        n_in = a.check_size("input_size", x[-1], "features", x)
        hidden, layers = a.int("hidden_size"), a.int("num_layers", hi=MAX_COUNT)
        a.prob("dropout")
        proj = a.int("proj_size", 0) if kind == "LSTM" else 0
        if proj >= hidden:
            raise ShapeError(f"LSTM.proj_size {proj} must be smaller than hidden_size "
                             f"{hidden}", arg="proj_size")
        if kind == "RNN":
            a.choice("nonlinearity", ("tanh", "relu"))
        dirs = 2 if a["bidirectional"] else 1
        h_out = proj or hidden
        seq_batch = x[:-1]
        batch = (x[0 if a["batch_first"] else 1],) if batched else ()
        out = seq_batch + (dirs * h_out,)
        h = (dirs * layers,) + batch + (h_out,)
        state = [h, (dirs * layers,) + batch + (hidden,)] if kind == "LSTM" else h
        if len(inputs) > 2:
            raise ShapeError(f"{kind} takes its input and at most an initial state, "
                             f"not {len(inputs)} inputs")
        if len(inputs) == 2 and not _same(inputs[1], state):
            raise ShapeError(f"{kind}'s initial state is {format_shape(inputs[1])} but "
                             f"should be {format_shape(state)} for input {format_shape(x)}")
        g = _GATES[kind] * hidden
        params = {}
        for layer in range(layers):
            for sfx in ("", "_reverse")[:dirs]:
                s = f"_l{layer}{sfx}"
                params[f"weight_ih{s}"] = (g, n_in if layer == 0 else dirs * h_out)
                params[f"weight_hh{s}"] = (g, h_out)
                if a["bias"]:
                    params[f"bias_ih{s}"] = params[f"bias_hh{s}"] = (g,)
                if proj:
                    params[f"weight_hr{s}"] = (proj, hidden)
        return [out, state], params


def _second_sequence(a, names, first, second, d: int, batched: bool, mismatch: str) -> None:
    """A Transformer part's second sequence (memory, tgt) must have d features and the first's batch."""
    if isinstance(second[-1], str) or known(second[-1]) and second[-1] != d:
        raise ShapeError(mismatch, arg="d_model")
    if batched:
        _agree(a.type, names, first, second, 0 if a["batch_first"] else 1, "batch size")


def _same(x, y):
    """Whether two values (shapes or multi-values) can be the same for every batch size."""
    if isinstance(x, list) or isinstance(y, list):
        return isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and all(
            _same(p, q) for p, q in zip(x, y))
    try:
        for p, q in zip(x, y):
            same_dim(p, q)
    except ValueError:
        return False
    return len(x) == len(y)


def _cell(kind):
    extra = {"nonlinearity": "tanh"} if kind == "RNN" else {}

    @rule(kind + "Cell", inferred=("input_size",), input_size=R, hidden_size=R, bias=True,
          **extra)
    def cell(a, inputs):
        x = tensor(a.type, inputs[:1])[0]
        rank(a.type, x, 1, 2, what=" (batch, features)")
        n_in = a.check_size("input_size", x[-1], "features", x)
        hidden = a.int("hidden_size")
        if kind == "RNN":
            a.choice("nonlinearity", ("tanh", "relu"))
        h = x[:-1] + (hidden,)
        out = [h, h] if kind == "LSTM" else h
        if len(inputs) > 2 or len(inputs) == 2 and not _same(inputs[1], out):
            raise ShapeError(f"{a.type}'s state should be {format_shape(out)} for input "
                             f"{format_shape(x)}")
        g = _GATES[kind] * hidden
        params = {"weight_ih": (g, n_in), "weight_hh": (g, hidden)}
        if a["bias"]:
            params.update(bias_ih=(g,), bias_hh=(g,))
        return out, params


for _kind in _GATES:
    _recurrent(_kind)
    _cell(_kind)


# --- attention -------------------------------------------------------------------------

def _heads(a, e, name):
    h = a.int(name)
    if e % h:
        raise ShapeError(f"{a.type}: {'embed_dim' if name == 'num_heads' else 'd_model'} {e} "
                         f"is not divisible by {name} {h}", arg=name)


def _mha_params(e, kdim, vdim, bias, bias_kv=False, prefix=""):
    if kdim == vdim == e:
        p = {"in_proj_weight": (3 * e, e)}
    else:
        p = {"q_proj_weight": (e, e), "k_proj_weight": (e, kdim), "v_proj_weight": (e, vdim)}
    if bias:
        p["in_proj_bias"] = (3 * e,)
    if bias_kv:
        p.update(bias_k=(1, 1, e), bias_v=(1, 1, e))
    p["out_proj.weight"] = (e, e)
    if bias:
        p["out_proj.bias"] = (e,)
    return {prefix + k: v for k, v in p.items()}


@rule("MultiheadAttention", inferred=("embed_dim",), embed_dim=R, num_heads=R, dropout=0.0,
      bias=True, add_bias_kv=False, add_zero_attn=False, kdim=None, vdim=None,
      batch_first=False)
def _mha(a, inputs):
    # query (L, N, E) or (N, L, E) with batch_first or unbatched (L, E); key/value (S, N, *)
    xs = tensor(a.type, inputs, 8, 1)[:3]       # masks(...) checks the inputs past value
    q = xs[0]
    k = xs[1] if len(xs) > 1 else q
    v = xs[2] if len(xs) > 2 else k
    batched = rank(a.type, q, 2, 3, what=" query") == 3
    e = a.check_size("embed_dim", q[-1], "features", q)
    _heads(a, e, "num_heads")
    a.prob("dropout")
    dims = {}
    for name, t in (("kdim", k), ("vdim", v)):
        rank(a.type, t, len(q), what=f" {'key' if name == 'kdim' else 'value'}")
        if a[name] is None and known(t[-1]) and t[-1] != e:
            a.fill(name, t[-1])             # a key/value of another width sets kdim/vdim
        dims[name] = e if a[name] is None else a.check_size(name, t[-1], "features", t)
    seq, bat = (1, 0) if a["batch_first"] and batched else (0, 1)
    _agree(a.type, ("key", "value"), k, v, seq, "sequence length")
    if batched:
        _agree(a.type, ("key", "value"), k, v, bat, "batch size")
        _agree(a.type, ("query", "key"), q, k, bat, "batch size")
    s = k[seq]
    s = s + a["add_bias_kv"] + a["add_zero_attn"] if known(s) else s if not (
        a["add_bias_kv"] or a["add_zero_attn"]) else None
    heads = a["num_heads"]
    per_head = a.forward.get("average_attn_weights", True) is False
    weights = ((q[bat],) if batched else ()) + ((heads,) if per_head else ()) + (q[seq], s)
    masks(a, inputs[3:], {"k": k[seq], "q": q[seq]}, q[bat] if batched else None, heads)
    given_weights = a.forward.get("need_weights", True) is not False
    return [q, weights if given_weights else None], _mha_params(e, dims["kdim"], dims["vdim"], a["bias"],
                                                                a["add_bias_kv"])


# The masks each attention layer takes after its sequences, in torch's order: (name, the lengths
# it spans).  Two lengths: an attention mask (L, S), or (N * heads, L, S); one: a key padding
# mask (N, S).  The letters name sequences: s src, t tgt, m memory, k MultiheadAttention's key.
_ENCODER = [("src_mask", "ss"), ("src_key_padding_mask", "s")]
_DECODER = [("tgt_mask", "tt"), ("memory_mask", "tm"), ("tgt_key_padding_mask", "t"),
            ("memory_key_padding_mask", "m")]
# MultiheadAttention's forward takes need_weights (a flag, None here) between its two masks.
MASKS = {"MultiheadAttention": [("key_padding_mask", "k"), None, ("attn_mask", "qk")], "TransformerEncoderLayer": _ENCODER,
         "TransformerEncoder": _ENCODER, "TransformerDecoderLayer": _DECODER, "TransformerDecoder": _DECODER,
         "Transformer": _ENCODER[:1] + _DECODER[:1] + [("memory_mask", "ts"), _ENCODER[1], _DECODER[2],
                                                        ("memory_key_padding_mask", "s")]}


# A causal flag of the forward call is a hint about a mask torch then requires (flag -> that mask).
_DECODER_CAUSAL = {"tgt_is_causal": "tgt_mask", "memory_is_causal": "memory_mask"}
CAUSAL = {"MultiheadAttention": {"is_causal": "attn_mask"}, "TransformerEncoderLayer": {"is_causal": "src_mask"},
          "TransformerEncoder": {"is_causal": "src_mask"}, "TransformerDecoderLayer": _DECODER_CAUSAL,
          "TransformerDecoder": _DECODER_CAUSAL, "Transformer": {"src_is_causal": "src_mask", **_DECODER_CAUSAL}}


def masks(a, given, lengths: dict, batch, heads):
    """Check the mask inputs `given` against MASKS: `lengths` maps a letter to its sequence's
    length; `batch` is the batch dim (None when unbatched); `heads` the attention heads."""
    names = MASKS[a.type]
    positional = names[:names.index(None)] if None in names else names
    if len(given) > len(names) or any(m is not None and about is None for m, about in zip(given, names)):
        raise ShapeError(f"{a.type} takes at most {len(positional)} mask(s) after its sequences in `in:` "
                         f"({', '.join(n for n, _ in positional)}), not {len(given)} inputs more",
                         "give the others by name with `forward:` (attn_mask: mask); is_causal and "
                         "need_weights are flags there")
    for flag, mask in CAUSAL[a.type].items():
        at = [about[0] if about else None for about in names].index(mask)
        if a.forward.get(flag) and (at >= len(given) or given[at] is None):
            raise ShapeError(f"{a.type}'s {flag} is a hint that its {mask} is causal, and it is given no {mask}",
                             f"give the mask too (torch needs it), or use scaled_dot_product_attention with "
                             f"is_causal: true")
    for m, about in zip(given, names):
        if m is None or about is None:
            continue              # not given, or a flag's place
        name, span = about
        want = [lengths[c] for c in span]
        if len(span) == 1:
            want = ([batch] if batch is not None else []) + want
        elif len(m) == 3:                    # one mask per sequence and head
            first = heads if batch is None else batch if heads == 1 else batch * heads if known(batch) else None
            if first is None and batch is not None and m[0] is not None:
                raise ShapeError(f"{a.type}: its {name} {format_shape(m)} would need {batch} * {heads} "
                                 "masks in dim 0", "use a 2-d mask (the same for every sample and head)")
            want = [first] + want
        if not _same(tuple(m), tuple(want)):
            raise ShapeError(f"{a.type}: its {name} is {format_shape(m)} but should be "
                             f"{format_shape(tuple(want))}" + (" or 3-d, one per sample and head"
                                                               if len(span) == 2 and len(m) != 3 else ""))


_LAYER = dict(d_model=R, nhead=R, dim_feedforward=2048, dropout=0.1, activation="relu",
              layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)


def _transformer_layer(decoder):
    @rule("TransformerDecoderLayer" if decoder else "TransformerEncoderLayer",
          inferred=("d_model",), **_LAYER)
    def layer(a, inputs):
        n = 2 if decoder else 1                      # the sequences; masks follow
        xs = tensor(a.type, inputs, n + len(MASKS[a.type]) + 1, n)
        x = xs[0]
        batched = rank(a.type, x, 2, 3) == 3
        d = a.check_size("d_model", x[-1], "features", x)
        _heads(a, d, "nhead")
        ff, bias = a.int("dim_feedforward"), a["bias"]
        a.prob("dropout")
        a.choice("activation", ("relu", "gelu"))
        if decoder:
            m = xs[1]
            rank(a.type, m, len(x), what=" memory")
            _second_sequence(a, ("tgt", "memory"), x, m, d, batched,
                             f"{a.type}: memory {format_shape(m)} has {m[-1]} features "
                             f"but d_model is {d} (tgt {format_shape(x)})")
        seq_masks(a, xs, batched, a.v)
        params = _mha_params(d, d, d, bias, prefix="self_attn.")
        if decoder:
            params.update(_mha_params(d, d, d, bias, prefix="multihead_attn."))
        params.update({"linear1.weight": (ff, d), "linear2.weight": (d, ff)})
        if bias:
            params.update({"linear1.bias": (ff,), "linear2.bias": (d,)})
        for i in range(1, 4 if decoder else 3):
            params[f"norm{i}.weight"] = (d,)
            if bias:
                params[f"norm{i}.bias"] = (d,)
        return x, params


def _stack(decoder):
    name = "decoder_layer" if decoder else "encoder_layer"
    extra = {} if decoder else dict(enable_nested_tensor=True, mask_check=True)

    @rule("TransformerDecoder" if decoder else "TransformerEncoder",
          **{name: R}, num_layers=R, norm=None, **extra)
    def stack(a, inputs):
        k = 2 if decoder else 1                      # the sequences; masks follow
        xs = tensor(a.type, inputs, k + len(MASKS[a.type]) + 1, k)
        n = a.int("num_layers", hi=MAX_COUNT)
        layer = a[name]
        want = "TransformerDecoderLayer" if decoder else "TransformerEncoderLayer"
        if isinstance(layer, dict) and layer.get("type") != want:
            raise ShapeError(f"{a.type}.{name} must be a {want}, not {layer.get('type')!r}", arg=name)
        r = nested(a, name, xs[:k])
        if r.output != xs[0]:
            raise ShapeError(f"{a.type}: its {name} maps {format_shape(xs[0])} to "
                             f"{format_shape(r.output)}; a stack needs the shape kept",
                             arg=name)
        seq_masks(a, xs, len(xs[0]) == 3, {"batch_first": False, **a[name]})
        params = {f"layers.{i}.{k}": v for i in range(n) for k, v in r.param_shapes.items()}
        if a["norm"] is None:
            return r.output, params
        norm = nested(a, "norm", [r.output], [r.dtype])       # any layer, applied last
        params.update({"norm." + k: v for k, v in norm.param_shapes.items()})
        return norm.output, params


def seq_masks(a, xs, batched, layer):
    """The masks after a Transformer part's sequences: src (or tgt and memory), as `layer` (the
    args of its layer: batch_first, nhead) lays them out."""
    heads = layer.get("nhead")
    seq, bat = (1, 0) if layer.get("batch_first") and batched else (0, 1)
    decoder = "Decoder" in a.type
    lengths = {"t": xs[0][seq], "m": xs[1][seq]} if decoder else {"s": xs[0][seq]}
    masks(a, xs[2 if decoder else 1:], lengths, xs[0][bat] if batched else None, heads)


for _decoder in (False, True):
    _transformer_layer(_decoder)
    _stack(_decoder)


@rule("Transformer", inferred=("d_model",), d_model=R, nhead=8, num_encoder_layers=6,
      num_decoder_layers=6, custom_encoder=None, custom_decoder=None,
      **{k: v for k, v in _LAYER.items() if k not in ("d_model", "nhead")})
def _transformer(a, inputs):
    # src (S, N, E), tgt (T, N, E) -> (T, N, E); d_model is inferred when omitted
    xs = tensor(a.type, inputs, 2 + len(MASKS[a.type]) + 1, 2)
    src, tgt = xs[:2]
    batched = rank(a.type, src, 2, 3, what=" src") == 3
    rank(a.type, tgt, len(src), what=" tgt")
    d = a.check_size("d_model", src[-1], "features", src)
    _second_sequence(a, ("src", "tgt"), src, tgt, d, batched,
                     f"Transformer: tgt {format_shape(tgt)} has {tgt[-1]} features but "
                     f"src {format_shape(src)} has {d}")
    seq, bat = (1, 0) if a["batch_first"] and batched else (0, 1)
    masks(a, xs[2:], {"s": src[seq], "t": tgt[seq]}, src[bat] if batched else None, a["nhead"])
    layer = {k: a[k] for k in _LAYER if k in a.out or k in ("d_model", "nhead")}
    params, memory = {}, src
    for part in ("encoder", "decoder"):         # the decoder reads the encoder's output
        ins = [src] if part == "encoder" else [tgt, memory]
        custom = a["custom_" + part]
        if custom is not None:                  # the policy checks src and tgt are float32
            want = f"Transformer{part.title()}"     # called with its masks as keywords
            if isinstance(custom, dict) and custom.get("type") != want:
                raise ShapeError(f"Transformer.custom_{part} must be a {want}, not {custom.get('type')!r}",
                                 arg="custom_" + part)
            r = nested(a, "custom_" + part, ins, [FLOAT32] * len(ins))
        else:
            spec = {"type": f"Transformer{part.title()}", "num_layers": a[f"num_{part}_layers"],
                    f"{part}_layer": {"type": f"Transformer{part.title()}Layer", **layer},
                    "norm": {"type": "LayerNorm", "eps": a["layer_norm_eps"], "bias": a["bias"]}}
            r = infer(spec["type"], {k: v for k, v in spec.items() if k != "type"}, ins)
        params.update({f"{part}.{k}": v for k, v in r.param_shapes.items()})
        memory = r.output
    return memory, params
