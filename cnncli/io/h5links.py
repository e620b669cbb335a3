"""HDF5 links walked one by one, never followed blindly: where a path leads, which links leave the file, and
which point nowhere (a soft link to a missing path, an external link to a missing file or object).

Split from :mod:`cnncli.io.hdf5`, which reads datasets and attributes with these.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from ..errors import InputError, first_fitting

#: Soft links followed in one path before giving up (HDF5's own limit is 16 nested links).
MAX_LINKS = 32


def h5py_module():
    """The ``h5py`` module, imported on first use (start-up time of the commands that never touch HDF5).

    Returns
    -------
    module

    Raises
    ------
    ImportError
        h5py is not installed (it is a dependency: a broken installation).
    """
    import h5py

    return h5py


def readable_links(f, allow_external: bool) -> list:
    """:func:`external_links` of ``f`` without those that point nowhere (:func:`points_nowhere`).

    Returns
    -------
    list of str

    Raises
    ------
    Nothing.
    """
    return [path for path in external_links(f) if not points_nowhere(f, path, allow_external)]


def points_nowhere(f, path: str, allow_external: bool = False) -> bool:
    """Whether the external link at ``path`` in ``f`` is dangling: its file is nowhere HDF5 would look, or
    (when ``allow_external`` lets it be opened) that file has no such object.

    Parameters
    ----------
    f : h5py.File
    path : str
        Absolute path of an external link in ``f``.
    allow_external : bool
        Whether the target may be opened; without it, only whether its file exists is asked (a stat).

    Returns
    -------
    bool

    Raises
    ------
    Nothing.
    """
    link = f.get(path, getlink=True)
    # NOTE: HDF5's search for a link's file: HDF5_EXT_PREFIX's folders, then the linking file's folder, then
    # the name as given; an absolute name is tried as given first, then by its base name in those folders
    here = os.path.dirname(os.path.abspath(f.filename)) if isinstance(f.filename, str) else "."
    folders = [d.replace("${ORIGIN}", here) for d in os.environ.get("HDF5_EXT_PREFIX", "").split(os.pathsep) if d]
    name = link.filename
    if os.path.isabs(name):
        tried = [name] + [os.path.join(d, os.path.basename(name)) for d in folders + [here]]
    else:
        tried = [os.path.join(d, name) for d in folders + [here]] + [name]
    if not any(os.path.isfile(t) for t in tried):
        return True
    if not allow_external:
        return False  # the file is there; what it holds is not looked at without --allow-external
    try:
        return f.get(path) is None
    except Exception:  # a damaged or unreadable target: nothing to read there either
        return True


def external_links(f) -> list:
    """Paths in ``f`` that are external links, found without following any (nor opening another file).

    Returns
    -------
    list of str

    Raises
    ------
    Nothing (h5py's own errors on a corrupt file pass through).
    """
    h5py = h5py_module()
    groups, found = ["/"], []
    f.visititems(lambda name, obj: groups.append("/" + text_of(name)) if isinstance(obj, h5py.Group) else None)
    for path in groups:
        group = f[path]
        for key in group:
            if isinstance(key, str) and isinstance(group.get(key, getlink=True), h5py.ExternalLink):
                found.append(f"{path.rstrip('/')}/{key}")
    return found


def text_of(name) -> str:
    """A member name as text: h5py gives bytes for a name that is not UTF-8 (a damaged file's).

    Returns
    -------
    str

    Raises
    ------
    Nothing.
    """
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def walk_links(f, path: str) -> Tuple[Optional[str], Optional[object]]:
    """Resolve ``path`` in ``f`` link by link, without opening anything outside the file.

    Parameters
    ----------
    f : h5py.File
    path : str
        Absolute path inside ``f``.

    Returns
    -------
    path : str or None
        The path of the object reached by hard links only (None when a link is missing,
        loops or crosses into another file).
    external : h5py.ExternalLink or None
        The external link the path goes through, if any.

    Raises
    ------
    Nothing: a missing or looping path is ``(None, None)``.
    """
    h5py = h5py_module()
    parts = [p for p in path.split("/") if p]
    here, links = "", 0
    while parts:
        group = f.get(here or "/")  # reached by hard links only: safe to open
        if not isinstance(group, h5py.Group):
            return None, None
        part = parts.pop(0)
        link = group.get(part, getlink=True)
        if link is None:
            return None, None
        if isinstance(link, h5py.ExternalLink):
            return None, link
        if isinstance(link, h5py.SoftLink):
            links += 1
            if links > MAX_LINKS:
                return None, None
            target = link.path if link.path.startswith("/") else f"{here}/{link.path}"
            parts = [p for p in target.split("/") if p] + parts
            here = ""
            continue
        here = f"{here}/{part}"
    return here or "/", None


def link_kind(f, path: str) -> Optional[str]:
    """What ``path`` leads to in ``f``, opening nothing outside the file.

    Parameters
    ----------
    f : h5py.File
    path : str
        Absolute path inside ``f``.

    Returns
    -------
    {"dataset", "group", "external"} or None
        "external" when the path goes through an external link; None when it is missing or loops.

    Raises
    ------
    Nothing.
    """
    h5py = h5py_module()
    inside, external = walk_links(f, path)
    if external is not None:
        return "external"
    obj = f.get(inside) if inside is not None else None
    if isinstance(obj, h5py.Dataset):
        return "dataset"
    return "group" if isinstance(obj, h5py.Group) else None


def refuse_dangling(f, path: str, text: str, external, names) -> None:
    """Refuse ``path`` when it is a link that points nowhere; return when it is just not there.

    Parameters
    ----------
    f : h5py.File
    path : str
        Absolute path that leads to no object of ``f``.
    text : str
        The reference as the message names it (``"x.h5:/S"``).
    external : h5py.ExternalLink or None
        The external link the path went through (followed: ``--allow-external``).
    names : list of str
        The file's datasets, listed when the line still fits 80 columns.

    Raises
    ------
    InputError
        ``'x.h5:/S' points nowhere (a soft link to '/B'); it has: /A, /W``, or for an external link
        ``'x.h5:/E' points nowhere (a link to 'missing.h5:/x')``.
    """
    if external is not None:
        raise InputError(f"{text!r} points nowhere (a link to '{external.filename}:{external.path}')")
    try:
        link = f.get(path, getlink=True)
    except Exception:  # a group on the way is missing: not a link of this file
        return
    if isinstance(link, h5py_module().SoftLink):
        said = f"{text!r} points nowhere (a soft link to {link.path!r})"
        raise InputError(first_fitting(f"{said}; it has: {', '.join(names)}", said) if names else said)
