"""A layer call resolved from a source and options: arrays loaded, NHWC, in the compute dtype.

``forward``, ``backward`` and ``gradcheck`` all start here::

    with resolve_layer("case.h5", stream=True, stride="2") as call:
        # call.kind: "conv" | "pool"; call.A_prev, call.W, call.b, call.grad: NHWC ndarrays in the
        # compute dtype (float64 unless dtype="float32"); call.W/b/grad may be None; call.params:
        # ConvParams | PoolParams; call.geometry: the resolved WindowGeometry; call.notes: one-line notes
        # to show the user; call.layout: the user's layout (convert results back with call.to_user(name, arr)).

Every option defaults to ``None`` so that :func:`resolve_layer` can tell "not given"
from a value: options override a case file's attributes, which override the defaults
(SPEC "Case files"). The layer kind comes from ``layer``, else the case's ``layer``
attribute, else conv when weights are given, else pool when ``f`` or ``mode`` is.
Every problem raises a :class:`~cnncli.errors.CnncliError` subclass with a one-line
message naming the command-line flag or the file (the CLI turns it into exit 2).
Knows nothing of the terminal.
"""

from __future__ import annotations

from typing import Optional

from ..engine import layout as layouts
from ..engine.params import ConvParams, PoolParams
from ..engine.shapes import ConvShapeError, check_conv_shapes, check_layer_fits
from ..errors import CnncliError, HyperparameterError, InputError, ShapeError, first_fitting
from ..io import cases, dtypes
from ..io.budget import memory_setting
from ..io.readers import REF_FORMS
from ..io.text import PAD_FORMS, read_flag, read_hyperparameters, read_int, read_pair
from ..io.arrays import ArrayStream, check_array_file, load_array, open_array
from .hints import pytorch_filters_hint
from .layer import Batches, LayerCall, compute
from .settings import CASE_KEYS_OF, CaseSettings, read_word

#: Option names accepted by :func:`resolve_layer` besides ``source`` and ``stream``.
OPTION_KEYS = ("layer", "weights", "bias", "f", "stride", "pad", "dilation", "groups", "mode",
               "ceil_mode", "count_include_pad", "layout", "dtype", "grad", "allow_external")
_CONV_ONLY = {"weights": "--weights", "bias": "--bias", "groups": "--groups"}
_POOL_ONLY = {"mode": "--mode", "ceil_mode": "--ceil-mode", "count_include_pad": "--count-include-pad"}
_ARRAY = REF_FORMS
#: What each text option takes, for the message when it is given empty (``--layout ''``).
_EXPECTED = {"layer": "conv or pool", "weights": _ARRAY, "bias": _ARRAY, "f": "an int or HxW",
             "stride": "an int or HxW", "pad": PAD_FORMS,
             "dilation": "an int or HxW", "mode": "max or average", "layout": "nhwc or nchw",
             "dtype": "float64 or float32", "grad": _ARRAY}



def resolve_layer(source: Optional[str], *, stream: bool = False, want_grad: bool = True, **options) -> LayerCall:
    """Resolve SOURCE and the layer options into a :class:`LayerCall`.

    Parameters
    ----------
    source : str
        A case file (``.h5``/``.npz`` holding ``A_prev``) or an array reference for ``A_prev``.
    stream : bool
        Return ``A_prev`` and ``grad`` as :class:`Batches` read lazily (HDF5 and .npy stay on disk).
        Call ``close()`` (or use the call as a context manager) when done.
    want_grad : bool
        Load the upstream gradient (``--grad`` or the case's ``dZ``/``dA``); ``forward`` does not.
    **options
        Any of :data:`OPTION_KEYS`, None meaning "not given": layer, weights, bias, f, stride,
        pad, dilation, groups, mode, ceil_mode, count_include_pad, layout, dtype, grad, allow_external
        (let HDF5 inputs read other files: external links, external storage, virtual datasets).

    Returns
    -------
    LayerCall

    Raises
    ------
    ExternalDataError
        An HDF5 input reads another file, without ``allow_external``.
    InputError
        Unreadable arrays, refused dtypes, no source, several arrays from stdin, unknown dtype.
    ShapeError
        Wrong ndim, channel / bias / groups / grad shape mismatches.
    HyperparameterError
        Bad hyperparameter values or words, options that do not apply to the layer kind.
    """
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise TypeError(f"resolve_layer got unknown options {sorted(unknown)}")
    opts = {k: options.get(k) for k in OPTION_KEYS}
    for key, expected in _EXPECTED.items():  # an empty value is a bad value, never "not given"
        if isinstance(opts[key], str) and not opts[key].strip():
            error = InputError if expected is _ARRAY else HyperparameterError
            raise error(f"--{key} is empty: give {expected}")
    if source is None:
        raise InputError("no SOURCE given: a case file or an array reference for A_prev")
    stdin_users = [n for n, v in [("SOURCE", source), ("--weights", opts["weights"]),
                                  ("--bias", opts["bias"]), ("--grad", opts["grad"])] if v == "-"]
    if len(stdin_users) > 1:
        raise InputError(f"only one input can be '-' (stdin), not {' and '.join(stdin_users)}")

    # NOTE: files first: a typo in a path is what a person needs to hear about, not the layer kind it hid.
    for ref, role in ((source, "A_prev"), (opts["weights"], "--weights"), (opts["bias"], "--bias"),
                      (opts["grad"], "--grad")):
        if ref is not None and ref != "-":
            check_array_file(ref, role=role)
    attrs, refs, notes = ({}, {"A_prev": source}, [])
    is_case = cases.is_case(source)
    if is_case:
        attrs, refs = cases.case_refs(source)
        notes = cases.unused_attribute_notes(attrs)  # other attributes are allowed (metadata) and ignored
    case = CaseSettings(source, attrs, opts)
    case.check(("layer", "layout"))

    def pick(key):
        return opts[key] if opts[key] is not None else case.used.get(key)

    if opts["weights"] is not None:
        refs["W"] = opts["weights"]
    if opts["bias"] is not None:
        refs["b"] = opts["bias"]

    kind = pick("layer")
    if kind is not None:
        kind = read_word(kind, "--layer" if opts["layer"] is not None else "layer", ("conv", "pool"))
    elif "W" in refs:
        kind = "conv"
    elif pick("f") is not None or pick("mode") is not None:
        kind = "pool"
    else:
        if source != "-" and not is_case:
            # a file that cannot be read as an array (text named x.npz, a cut-short .npy) hid the layer kind
            # it might have held: its own problem first, as for a missing file
            open_array(source, role="A_prev", allow_external=bool(opts["allow_external"])).close()
        raise HyperparameterError("layer kind unknown: give --layer, --weights (conv) or --f (pool)")
    grad_key = "dZ" if kind == "conv" else "dA"
    if is_case:  # an array the layer never reads (a pool case holding dZ) would otherwise pass unseen
        used = {"A_prev", "W", "b", "dZ"} if kind == "conv" else {"A_prev", "dA"}
        for name in refs:
            if name in ("dZ", "dA") and name != grad_key:
                notes.append(f"the case's {name} is not used: a {kind} layer's upstream gradient is {grad_key}")
            elif name not in used:
                notes.append(f"the case's {name} is not used (a {kind} layer reads A_prev"
                             f"{', W, b' if kind == 'conv' else ''} and {grad_key})")
        # the other kind's settings (a conv case's mode, a pool case's groups): as options they are refused
        theirs = [k for k in CASE_KEYS_OF["pool" if kind == "conv" else "conv"]
                  if k in case.used and k not in CASE_KEYS_OF[kind]]
        if theirs:
            notes.append(f"the case's {', '.join(theirs)} {'is' if len(theirs) == 1 else 'are'} not used: "
                         f"a {kind} layer has none")
    if opts["grad"] is not None:
        refs[grad_key] = opts["grad"]
    if not want_grad:
        refs.pop(grad_key, None)

    misplaced = _CONV_ONLY if kind == "pool" else _POOL_ONLY
    for key, flag in misplaced.items():
        if opts[key] is not None:
            raise HyperparameterError(f"{flag} applies to {'conv' if kind == 'pool' else 'pooling'} layers only; "
                                      f"this is a {kind} layer")
    case.check(CASE_KEYS_OF[kind])
    layout = read_word(_or(pick("layout"), "nhwc"), "--layout", ("nhwc", "nchw"))
    target = dtypes.float64_unless_float32_asked(opts["dtype"])

    call = LayerCall(kind=kind, A_prev=None, W=None, b=None, params=None, grad=None, layout=layout, dtype=target,
                     notes=notes)
    declared = _case_layout(attrs) if opts["layout"] is not None else None
    if declared not in (None, layout):
        # NOTE: the option wins (SPEC "Case files"), as any option does: a case whose attribute is wrong stays
        # usable. But a layout describes how the stored arrays lie, so the override is said, and arrays that
        # disagree under it are refused naming the conflict rather than the shapes it produced.
        notes.append(f"--layout {layout} overrides the case's layout {declared}")
        call._misread = f"--layout {layout} misreads {source!r} (its layout is {declared})"
    try:
        _fill(call, refs, pick, opts, stream, case)
    except (ShapeError, HyperparameterError) as exc:
        call.close()
        # "misreads" only when it is true: the arrays agree read as the case says (a wrong --grad, window
        # or groups keeps its own message, and stdin cannot be read twice to find out)
        if call._misread and not stdin_users and _agrees(source, stream, want_grad, dict(options, layout=None)):
            raise ShapeError(call._misread) from exc
        raise
    except BaseException:
        call.close()
        raise
    return call


def _agrees(source: str, stream: bool, want_grad: bool, options: dict) -> bool:
    """Whether SOURCE and the options resolve into a layer call (the arrays and hyperparameters agree)."""
    try:
        resolve_layer(source, stream=stream, want_grad=want_grad, **options).close()
    except CnncliError:
        return False
    return True


def _case_layout(attrs: dict) -> Optional[str]:
    """The layout a case file declares, or None (none, or a word that is not a layout)."""
    try:
        return read_word(attrs["layout"], "layout", ("nhwc", "nchw")) if "layout" in attrs else None
    except HyperparameterError:
        return None


#: The option that gives each input (``--weights`` ...), which its messages name when the user gave it
_OPTION = {"W": "weights", "b": "bias", "dZ": "grad", "dA": "grad"}


def _load(call: LayerCall, name: str, ref: str, stream: bool, stored: dict, opts: dict):
    """Load one input, record where it came from, refuse anything but 4-D for the big ones."""
    # NOTE: an array of a case file is named as the case names it (W, b, dZ), not by a flag never given
    key = _OPTION.get(name)
    role = f"--{key}" if key is not None and opts[key] is not None else name
    allow_external = bool(opts["allow_external"])
    if stream and name in ("A_prev", "dZ", "dA"):
        s = open_array(ref, role=role, allow_external=allow_external)
        call._streams.append(s)
        shape, dtype, value = s.shape, s.dtype, s
    else:
        value = load_array(ref, role=role, allow_external=allow_external)
        shape, dtype = value.shape, value.dtype
    call.inputs[name] = {"source": ref, "shape": list(shape), "dtype": str(dtype)}
    stored[name] = dtype
    if name in ("dZ", "dA") and len(shape) != 4:
        raise _grad_shape_error(call, name, ref, shape)
    if name != "b" and len(shape) != 4:
        expect = {"A_prev": "(m, C, H, W)" if call.layout == "nchw" else "(m, n_H, n_W, n_C)",
                  "W": "(C_out, C_in/groups, kH, kW)" if call.layout == "nchw" else "(f, f, n_C_prev/groups, n_C)"}
        raise ShapeError.worded(f"{name} {ref!r} is {tuple(shape)}; expected 4-D {expect[name]}",
                                f"{name} {ref!r} is {_dims(shape)}; expected 4-D {expect[name]}",
                                f"{name} {ref!r} is {len(shape)}-D; expected 4-D {expect[name]}")
    return value


def _grad_shape_error(call: LayerCall, name: str, ref: str, shape) -> ShapeError:
    """The error for an upstream gradient not shaped like the forward output (returned, to be raised)."""
    # NOTE: fewer words, then shapes as 2x3x4x8 (as the case messages write them), where the ref is long
    # (examples/dZ.npy, grads.h5:/layer2/dZ); never a cut ref, which would not find the file
    want = layouts.shape_from_nhwc(call.out_shape, call.layout)
    return ShapeError(first_fitting(f"{name} {ref!r} is {tuple(shape)}; expected the output's {want}",
                                    f"{name} {ref!r} is {tuple(shape)}; expected {want}",
                                    f"{name} {ref!r} is {_dims(shape)}; expected {_dims(want)}"))


def _dims(shape) -> str:
    """A shape as the short messages write it: ``2x3x4x8`` (a 1-D or 0-D one as its tuple)."""
    return "x".join(map(str, shape)) if len(shape) > 1 else str(tuple(shape))


def _batch_input(call: LayerCall, src) -> object:
    """A loaded A_prev / gradient as NHWC in the compute dtype (lazy Batches when streamed)."""
    if isinstance(src, ArrayStream):
        return Batches(src, call.layout, call.dtype)
    return compute(layouts.to_nhwc(src, call.layout), call.dtype)


def _fill(call: LayerCall, refs: dict, pick, opts: dict, stream: bool, case: CaseSettings) -> None:
    """Load every input of ``call`` and resolve its hyperparameters, validating as it goes."""
    stored: dict = {}
    call.A_prev = _batch_input(call, _load(call, "A_prev", refs["A_prev"], stream, stored, opts))
    m, H, Wd, C = call.A_prev.shape
    if min(m, H, Wd, C) < 1:
        stored_shape = tuple(call.inputs["A_prev"]["shape"])
        raise ShapeError(f"A_prev {refs['A_prev']!r} has an empty axis: shape {stored_shape}")
    if call.kind == "conv":
        _fill_conv(call, refs, pick, opts, stored, case)
    else:
        _fill_pool(call, pick, opts, case)

    grad_key = "dZ" if call.kind == "conv" else "dA"
    if grad_key in refs:
        g_src = _load(call, grad_key, refs[grad_key], stream, stored, opts)
        g_shape = call.inputs[grad_key]["shape"]
        if layouts.shape_to_nhwc(g_shape, call.layout) != call.out_shape:
            raise _grad_shape_error(call, grad_key, refs[grad_key], g_shape)
        call.grad = _batch_input(call, g_src)
    note = dtypes.dtype_note(stored, call.dtype, opts["dtype"])
    if note:
        call.notes.insert(0, note)


def _or(value, default):
    return default if value is None else value


def _given(**values) -> dict:
    """The hyperparameters given (not None), their text read in the order the records check them."""
    return read_hyperparameters({k: v for k, v in values.items() if v is not None})


def _fill_conv(call: LayerCall, refs: dict, pick, opts: dict, stored: dict, case: CaseSettings) -> None:
    """Filters, bias, groups and ConvParams; the engine's shape check, worded with file names and layout."""
    # NOTE: checking here, before any batch is streamed, lets the message name the file and speak the
    # user's layout; the check itself is the engine's (check_conv_shapes), so conv2d agrees with it.
    if "W" not in refs:
        raise InputError("a conv layer needs filters: give --weights ARRAY or a case with W")
    C = call.A_prev.shape[3]
    W = _load(call, "W", refs["W"], False, stored, opts)
    call.W = compute(layouts.to_nhwc(W, call.layout, weights=True), call.dtype)
    kh, kw, _, n_C = call.W.shape
    try:
        groups = check_conv_shapes(call.A_prev.shape, call.W.shape, None, read_int(_or(pick("groups"), 1), "groups"))
    except ConvShapeError as exc:
        if exc.problem == "empty W":
            raise ShapeError(f"W {refs['W']!r} has an empty axis: shape {tuple(call.inputs['W']['shape'])}") from exc
        hint = _torch_hint(call, pick)
        if hint:
            with case.blame("groups"):
                raise ShapeError(hint) from exc
        want = layouts.shape_from_nhwc((kh, kw, C // exc.groups, n_C), call.layout, weights=True)
        got = tuple(call.inputs["W"]["shape"])
        channels = f"A_prev's {C} channels" if exc.groups == 1 else f"{C} channels, groups={exc.groups}"
        # fewer words where the line would pass 80 columns: shapes as 3x3x4x8, the channels alone, the shapes
        # alone; the ref is never cut, and where no wording fits (a long path) the whole words stay
        after, ref = case.blamed("groups"), refs["W"]
        wordings = (f"W {ref!r} is {got}; {channels} need {want}{after}",
                    f"W {ref!r} is {_dims(got)}; {channels} need {_dims(want)}{after}",
                    f"W {ref!r} is {_dims(got)}; {C} channels need {_dims(want)}{after}",
                    f"W {ref!r} is {_dims(got)}, not {_dims(want)}{after}")
        raise ShapeError(first_fitting(*wordings)) from exc
    except HyperparameterError as exc:  # groups that divide no channel count of the NHWC reading
        hint = _torch_hint(call, pick)
        if hint:
            raise ShapeError(hint) from exc
        with case.blame("groups"):
            raise
    if opts["f"] is not None and read_pair(opts["f"], "--f") != (kh, kw):
        raise ShapeError(f"--f {opts['f']} disagrees with the {kh}x{kw} kernel of W {refs['W']!r}")
    if opts["f"] is None and pick("f") is not None:  # a conv case's f: W's window, or a contradiction to say
        f = read_pair(pick("f"), "f")
        if f != (kh, kw):
            raise ShapeError(f"{case.path!r} sets f={f[0]}x{f[1]}, but W {refs['W']!r} is {kh}x{kw}")
    call.params = ConvParams.from_hparameters(_given(stride=pick("stride"), dilation=pick("dilation"),
                                                     pad=pick("pad"), groups=groups))
    try:
        geometry = call.geometry
    except HyperparameterError as exc:  # a window that fits no input: PyTorch's (C_out, C_in, kH, kW) read as NHWC?
        hint = _torch_hint(call, pick)
        if hint:
            raise ShapeError(hint) from exc
        with case.blame("stride", "pad", "dilation"):
            raise
    with case.blame("stride", "pad", "dilation"):
        # NOTE: resolved now, so a window that fits no input, or an output that could never be allocated, is
        # reported before the bias is read (streamed passes hold a block of one example's rows; gradcheck and
        # the API hold examples whole, and the refusal of one example's output is what every command shares)
        check_layer_fits(geometry, 1, C, n_C, call.dtype.itemsize, **memory_setting())
    if "b" not in refs:
        call.notes.append("no bias given: b = 0")
        call.bias_shape = (n_C,)
        return
    b = _load(call, "b", refs["b"], False, stored, opts)
    try:
        check_conv_shapes(call.A_prev.shape, call.W.shape, b.shape, groups)
    except ConvShapeError as exc:
        raise ShapeError(f"b {refs['b']!r} is {b.shape}; expected ({n_C},) or (1, 1, 1, {n_C})") from exc
    call.bias_shape = b.shape
    call.b = compute(b.reshape(n_C), call.dtype)


def _torch_hint(call: LayerCall, pick) -> Optional[str]:
    """The message for a W in PyTorch's layout read as NHWC (see :func:`.hints.pytorch_filters_hint`), else None."""
    if call.layout != "nhwc" or call._misread:  # "give --layout nchw" to a user who gave --layout nhwc: no
        return None
    try:
        params = ConvParams.from_hparameters(_given(stride=pick("stride"), dilation=pick("dilation"),
                                                    pad=pick("pad"), groups=_or(pick("groups"), 1)))
    except HyperparameterError:  # a bad value of its own: that error is the one to tell
        return None
    return pytorch_filters_hint(call.inputs["A_prev"]["shape"], call.inputs["W"]["shape"],
                                call.inputs["W"]["source"], params)


def _flag(key: str, pick, opts: dict, default: bool) -> bool:
    """A yes/no option or case attribute; words like "false" read as words (``bool("false")`` is True)."""
    value = pick(key)
    if value is None:
        return default
    name = "--" + key.replace("_", "-") if opts[key] is not None else key  # a case's value: checked by CaseSettings
    return read_flag(value, name)


def _fill_pool(call: LayerCall, pick, opts: dict, case: CaseSettings) -> None:
    """PoolParams; the stride defaults to the window."""
    if pick("f") is None:
        raise HyperparameterError("a pool layer needs a window size: give --f F (e.g. --f 2)")
    hp = _given(f=pick("f"), stride=pick("stride"), dilation=pick("dilation"), pad=pick("pad"),
                ceil_mode=_flag("ceil_mode", pick, opts, False),
                count_include_pad=_flag("count_include_pad", pick, opts, True))
    call.params = PoolParams.from_hparameters(hp, _or(pick("mode"), "max"))
    with case.blame("f", "stride", "pad", "dilation", "ceil_mode"):
        # resolved now: a window that fits no input, or arrays that could never be allocated, are refused
        C = call.A_prev.shape[3]
        check_layer_fits(call.geometry, 1, C, C, call.dtype.itemsize, pool=True, **memory_setting())
