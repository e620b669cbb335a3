"""HDF5 access for :mod:`cnncli.io.arrays` and :mod:`cnncli.io.cases`: datasets and attributes, read safely.

An HDF5 file can make a reader open other files: an external link points at an
object of another file, a dataset's raw data can live in external files (any file
the user can read, e.g. the system password file, is then copied byte for byte),
and a virtual dataset maps datasets of other files. cnncli reads only the file it
was given unless ``allow_external`` (``--allow-external``) says otherwise, and
refuses before anything outside is opened: links are walked one by one, never
followed blindly. Every failure is an :class:`~cnncli.errors.InputError` with a
one-line message naming the file, the dataset or attribute, and what is wrong.
The links themselves are walked in :mod:`cnncli.io.h5links`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional, Tuple

import numpy as np

from ..errors import CnncliError, ExternalDataError, InputError
from ..units import two_sizes
from .budget import memory_budget, over_budget
from .h5links import (h5py_module, link_kind, readable_links, refuse_dangling, text_of,
                      walk_links)
from .readers import ArrayRef, check_dtype, damaged, expect_format, listed, materialize, pick_name, source_of

_ALLOW = "refused without --allow-external"
_NEEDS = "needs --allow-external"  # fewer words, where 80 columns cannot hold _ALLOW


def open_h5(ref: ArrayRef):
    """Open an HDF5 file read-only.

    Parameters
    ----------
    ref : ArrayRef
        Of kind "h5"; materialized here when it comes from a pipe.

    Returns
    -------
    h5py.File

    Raises
    ------
    InputError
        Missing, unreadable or not an HDF5 file.
    """
    ref = materialize(ref)
    expect_format(ref, "h5")
    try:
        return h5py_module().File(source_of(ref), "r")
    except OSError as exc:
        raise damaged(ref.path, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """h5py's "Unable to ... (truncated file: eof = 3000, ...)": the words in the parentheses, before their details."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    reason = text.split("(")[-1].rstrip(")") if "(" in text else text
    return reason.split(":")[0].strip() or type(exc).__name__


@contextmanager
def corrupt_as_damaged(text: str):
    """Inside the block, HDF5's errors on corrupt metadata are "``text`` is damaged (...)" input errors.

    A damaged file can fail anywhere h5py reads its metadata (listing members, attributes,
    opening an object: OSError, RuntimeError, KeyError or ValueError); cnncli's own errors
    pass through.

    Parameters
    ----------
    text : str
        The file or reference, for the message.

    Raises
    ------
    InputError
        For any such HDF5 error inside the block.
    """
    try:
        yield
    except CnncliError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise damaged(text, _reason(exc)) from exc


def h5_datasets(group) -> list:
    """Paths of every dataset under ``group`` reached by hard links (never through another file).

    Parameters
    ----------
    group : h5py.Group

    Returns
    -------
    list of str
        Absolute paths, sorted.

    Raises
    ------
    Nothing (h5py's own errors on a corrupt file pass through).
    """
    found = []
    h5py = h5py_module()

    def visit(name, obj):  # NOTE: visititems follows hard links only: no external link is opened here
        name = text_of(name)
        if isinstance(obj, h5py.Dataset):
            found.append("/" + name if not name.startswith("/") else name)

    group.visititems(visit)
    prefix = group.name.rstrip("/")
    return sorted(prefix + p if prefix and not p.startswith(prefix + "/") else p for p in found)


#: Virtual sources a read of one dataset may resolve, counting those of the in-file virtual datasets it
#: maps as often as they are mapped (the HDF5 library resolves them so: a chain of datasets each mapping
#: the one before twice costs it 2**depth reads, a minute at depth 30 from a 20 KB file).
MAX_VIRTUAL_SOURCES = 4096


def _check_storage(f, ds, text: str) -> None:
    """Refuse a dataset whose raw data lives in other files (external storage, virtual sources), or
    whose virtual sources would cost the library more than :data:`MAX_VIRTUAL_SOURCES` reads.

    In-file virtual sources are followed to the datasets they map, each dataset examined once (the
    check had been 2**depth visits itself), however deep: a check that stops short accepts what it
    has not seen (a chain deeper than its old depth limit, 32, read an external file). The reads
    are then counted on the graph, closed form per dataset; a cycle counts as unbounded.
    """
    Dataset = h5py_module().Dataset
    root = ds.id
    seen, todo = {root}, [ds]
    mapped = {}  # dataset id -> (sources not in-file datasets, in-file datasets mapped, once per mapping)
    examined = 0
    while todo:
        ds = todo.pop()
        external = ds.external
        if external:
            where = external[0][0]
            raise ExternalDataError.worded(f"{text!r} keeps its data in {where!r}: {_ALLOW}",
                                           f"{text!r} keeps its data in {where!r}; {_NEEDS}",
                                           f"{text!r} reads {where!r}; {_NEEDS}")
        if not ds.is_virtual:
            continue
        # counted before h5py lists them: a list of a million mappings is itself slow
        examined += ds.id.get_create_plist().get_virtual_count()
        if examined > MAX_VIRTUAL_SOURCES:
            raise _too_many_sources(text)
        plain, inner = 0, []
        for source in ds.virtual_sources():
            if source.file_name != ".":
                where = f"'{source.file_name}:{source.dset_name}'"
                raise ExternalDataError.worded(f"{text!r} reads {where} (virtual): {_ALLOW}",
                                               f"{text!r} reads {where} (virtual); {_NEEDS}",
                                               f"{text!r} reads {source.file_name!r} (virtual); {_NEEDS}",
                                               f"{text!r} reads {source.file_name!r}; {_NEEDS}")
            name = source.dset_name if source.dset_name.startswith("/") else "/" + source.dset_name
            inside, link = walk_links(f, name)
            if link is not None:
                target = f"'{link.filename}:{link.path}'"
                raise ExternalDataError.worded(f"{text!r} reads {source.dset_name!r}, a link to {target}: {_ALLOW}",
                                               f"{text!r} reads {source.dset_name!r}, a link to {target}; {_NEEDS}",
                                               f"{text!r} reads {link.filename!r} via a link; {_NEEDS}")
            target = f.get(inside) if inside is not None else None
            if isinstance(target, Dataset):
                inner.append(target.id)
                if target.id not in seen:
                    seen.add(target.id)
                    todo.append(target)
            else:
                plain += 1
        mapped[ds.id] = (plain, inner)
    if _reads(mapped, root) > MAX_VIRTUAL_SOURCES:
        raise _too_many_sources(text)


def _reads(mapped: dict, root) -> int:
    """Virtual sources a read of ``root`` resolves: each mapped in-file virtual dataset's own, once per
    mapping (depth first, each dataset summed once; a cycle is unbounded). Stops counting past the cap."""
    cap = MAX_VIRTUAL_SOURCES + 1
    total, open_ = {}, set()
    stack = [root]
    while stack:
        node = stack[-1]
        if node in total:
            stack.pop()
        elif node not in open_:
            open_.add(node)
            for child in mapped.get(node, (0, ()))[1]:
                if child in open_:
                    return cap  # the dataset maps itself, through others or not: the library would loop
                if child not in total:
                    stack.append(child)
        else:
            stack.pop()
            open_.discard(node)
            plain, inner = mapped.get(node, (0, ()))
            total[node] = min(cap, plain + sum(1 + total[child] for child in inner))
    return total[root]


def _too_many_sources(text: str) -> ExternalDataError:
    return ExternalDataError.worded(
        f"{text!r} maps more than {MAX_VIRTUAL_SOURCES} virtual sources, too many to check: {_ALLOW}",
        f"{text!r} maps over {MAX_VIRTUAL_SOURCES} virtual sources; {_NEEDS}",
        f"{text!r}: too many virtual sources; {_NEEDS}")


def h5_dataset(f, ref: ArrayRef, *, allow_external: bool = False):
    """The dataset ``ref`` names in the open file ``f``, checked before any of its data is read.

    Parameters
    ----------
    f : h5py.File
        Opened with :func:`open_h5`.
    ref : ArrayRef
        ``ref.name`` is the dataset's path; None picks the file's only dataset.
    allow_external : bool
        Follow external links and read external or virtual storage in other files (``--allow-external``).

    Returns
    -------
    h5py.Dataset
        Of an accepted dtype (bool, integer, float), with a shape (not ``h5py.Empty``).

    Raises
    ------
    ExternalDataError
        Without ``allow_external``: the path crosses an external link, or the data is in external
        raw storage or a virtual dataset reading another file; the message names dataset and target.
    InputError
        Unknown path (the message lists the datasets that exist), a group, an empty dataset, or a
        refused or unreadable dtype.
    """
    h5py = h5py_module()
    names = h5_datasets(f)
    if ref.name is None:  # the only dataset; without one, the only external link (refused or followed below)
        # NOTE: here, not in the case files' module, so that a pipe (<(cat case.h5), read once) is caught too
        if link_kind(f, "/A_prev") == "group":  # a case file gone wrong: its only dataset may be W
            raise InputError(f"{ref.path!r}: its A_prev is a group, not the input array")
        path = pick_name(ref, names or readable_links(f, allow_external), "dataset")
    else:
        path = ref.name if ref.name.startswith("/") else "/" + ref.name
    text = f"{ref.path}:{path}"
    inside, link = walk_links(f, path)
    if link is not None and not allow_external:
        raise ExternalDataError.worded(f"{text!r} links to '{link.filename}:{link.path}': {_ALLOW}",
                                       f"{text!r} links to '{link.filename}:{link.path}'; {_NEEDS}",
                                       f"{text!r} links to {link.filename!r}; {_NEEDS}")
    obj = f.get(path) if link is not None else (f.get(inside) if inside is not None else None)
    if obj is None:
        refuse_dangling(f, path, text, link, names)
    if obj is None or not isinstance(obj, h5py.Dataset):
        inside_names = h5_datasets(obj) if isinstance(obj, h5py.Group) else names
        if isinstance(obj, h5py.Group):
            raise listed((f"{ref.text!r} is a group, not a dataset", f"{ref.text!r} is a group"), "datasets in it",
                         inside_names, "dataset")
        raise listed((f"{ref.path!r} has no dataset {path!r}", f"{ref.path!r} has no {path!r}"), "it has", names,
                     "dataset")
    if not allow_external:
        _check_storage(f, obj, text)
    try:
        dtype = obj.dtype
    except Exception as exc:  # h5py cannot even map the type (opaque, references...)
        raise InputError(f"{text!r} has a data type cnncli cannot read") from exc
    if obj.shape is None:
        raise InputError.worded(f"{text!r} is an empty dataset (h5py.Empty: no shape and no data); expected an array",
                                f"{text!r} is h5py.Empty (no shape, no data); expected an array",
                                f"{text!r} is h5py.Empty (no data); expected an array")
    check_dtype(dtype, repr(text))
    return obj


def chunk_cache_needed(ds, text: str) -> Optional[int]:
    """Before ``ds``'s data is read: refuse a chunk bomb; the chunk cache its reads need, if not the default.

    HDF5 inflates a filtered chunk whole to read any part of it: a 500 KB file can hold one chunk
    of 537 MB (a chunk bomb), refused here against the memory budget. And a chunk larger than the
    cache is inflated once per read that touches it (16 times for 16 examples a chunk read one by
    one): such a dataset needs a cache of one chunk (:func:`with_chunk_cache`). Reading the shape
    alone (``shape --like``) needs neither.

    Parameters
    ----------
    ds : h5py.Dataset
    text : str
        The reference, for the message.

    Returns
    -------
    int or None
        Bytes of cache for one chunk, or None when the dataset's own cache holds one.

    Raises
    ------
    InputError
        A compressed chunk larger than :func:`~cnncli.io.budget.memory_budget`.
    """
    chunks = ds.chunks
    if chunks is None or not ds.id.get_create_plist().get_nfilters():
        return None  # HDF5 reads the selected part of an unfiltered chunk only
    nbytes = int(np.prod(chunks, dtype=object)) * ds.dtype.itemsize
    budget = memory_budget()
    if nbytes > budget:
        need, allowed = two_sizes(nbytes, budget)
        raise over_budget(f"{text!r}: {need} chunks", allowed)  # a compressed chunk is inflated whole
    held = ds.id.get_access_plist().get_chunk_cache()[1]  # (slots, bytes, w0): h5py's default differs by version
    return None if nbytes <= held else nbytes + (1 << 20)


def with_chunk_cache(fid, name: str, cache: int):
    """Dataset ``name`` of the open file ``fid`` with a chunk cache of ``cache`` bytes.

    NOTE: HDF5 hands back the already open object (and its cache) while any handle to the dataset
    is alive: the caller drops its own before calling.

    Returns
    -------
    h5py.Dataset
    """
    h5py = h5py_module()
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(521, cache, 1.0)  # 521 hash slots (a prime); fully read chunks go first
    return h5py.Dataset(h5py.h5d.open(fid, name.encode(), dapl=dapl))


def read_h5(ds, ref_text: str, sel=()) -> np.ndarray:
    """``ds[sel]`` as an ndarray.

    Parameters
    ----------
    ds : h5py.Dataset
        From :func:`h5_dataset`.
    ref_text : str
        The reference, for messages.
    sel : slice or tuple
        What to read; ``()`` reads everything.

    Returns
    -------
    ndarray

    Raises
    ------
    InputError
        HDF5 read errors (a truncated file, a failing filter, a filter this HDF5 lacks, named as such).
    """
    try:
        return np.asarray(ds[sel])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        missing = _missing_filter(ds)
        if missing is not None:  # a sound file compressed by a plugin (Blosc, LZ4, Zstd...) this HDF5 lacks
            code, label = missing
            raise InputError.worded(f"{ref_text!r} needs HDF5 filter {code}{label}, which this HDF5 lacks; "
                                    "see HDF5_PLUGIN_PATH",
                                    f"{ref_text!r} needs HDF5 filter {code}{label}, not installed; "
                                    "see HDF5_PLUGIN_PATH",
                                    f"{ref_text!r} needs HDF5 filter {code}{label}; see HDF5_PLUGIN_PATH",
                                    f"{ref_text!r} needs HDF5 filter {code}, not installed") from exc
        raise damaged(ref_text, str(exc).splitlines()[0]) from exc


def _missing_filter(ds) -> Optional[Tuple[int, str]]:
    """The first filter of ``ds``'s pipeline this HDF5 cannot run, as (id, " (name)" or ""), else None."""
    try:
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _, _, name = plist.get_filter(i)
            if not h5py_module().h5z.filter_avail(code):
                name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name or "")
                return code, f" ({name})" if name.isidentifier() else ""
    except (OSError, RuntimeError, ValueError):  # metadata too damaged to tell: the read error stands
        pass
    return None


def read_attrs(obj, where: str) -> dict:
    """Every attribute of ``obj`` (a file, group or dataset) as stored, each read on its own.

    Parameters
    ----------
    obj : h5py.Group or h5py.Dataset
    where : str
        The file (and object) for messages, e.g. ``"case.h5"``.

    Returns
    -------
    dict of str to object
        numpy scalars, arrays, bytes or str, as h5py gives them.

    Raises
    ------
    InputError
        An attribute h5py cannot read (an opaque or unmapped type) or an empty one (``h5py.Empty``);
        the message names the file and the attribute.
    """
    h5py = h5py_module()
    values = {}
    for name in obj.attrs:
        try:
            value = obj.attrs[name]
        except Exception as exc:  # OSError "no appropriate function for conversion path", TypeError...
            raise InputError(f"{where!r}: attribute {name!r} is unreadable; store a number or a word") from exc
        if isinstance(value, h5py.Empty):
            raise InputError(f"{where!r}: attribute {name!r} is empty; give it a value or delete it")
        values[name] = value
    return values
