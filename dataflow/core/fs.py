"""The one filesystem layer: every input, output and side file is a URI, read and written through here.

Accepted: plain paths (relative to the current directory), `file://`, `s3://`/`s3a://`/`s3n://`, `gs://`/`gcs://`,
`hdfs://`, `abfs://`/`abfss://`. The layer is `pyarrow.fs`, chosen over Hadoop's FileSystem through the JVM
and over fsspec because:
- it works inside Python executors, where no JVM gateway exists (Hadoop's FileSystem is reachable from the
  driver's py4j only), so raw WARC/WET/JSONL bytes are streamed where the task runs;
- pyarrow is already a dependency (Spark's Arrow path), with S3, GCS, HDFS (libhdfs) and Azure built in, and
  random-access files with range reads, which splitting a 1 GB WARC at member offsets needs;
- fsspec would add one package per store (s3fs, gcsfs, adlfs) and their async stacks to every executor.

Spark's own Parquet reads and writes go through Hadoop; `spark_uri` gives the form it expects (`s3a://` for
S3). Object stores are configured by the usual environment: `AWS_ENDPOINT_URL` (an S3-compatible server),
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`.
"""
from __future__ import annotations

import fnmatch
import heapq
import os
import posixpath
import stat
import threading
import uuid
from dataclasses import dataclass
from typing import IO, Iterator
from urllib.parse import urlsplit

import pyarrow.fs as pafs

_S3 = ("s3", "s3a", "s3n")
_GCS = ("gs", "gcs")
_ABFS = ("abfs", "abfss")
REMOTE_SCHEMES = (*_S3, *_GCS, "hdfs", "viewfs", *_ABFS)
GLOB_CHARS = "*?["


def scheme(uri: str) -> str:
    """'' for a plain path, else the lower-case scheme (`file`, `s3a`, ...). A Windows drive is not a scheme."""
    uri = str(uri)
    if "://" not in uri:
        return ""
    return uri.split("://", 1)[0].lower()


def is_local(uri: str) -> bool:
    return scheme(uri) in ("", "file")


def local_path(uri: str) -> str:
    """The absolute local path of a plain path or `file://` URI."""
    uri = str(uri)
    if scheme(uri) == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri}: file:// URIs name no host (file:///abs/path)")
        uri = parts.path
    elif scheme(uri):
        raise ValueError(f"{uri} is not a local path")
    return os.path.abspath(os.path.expanduser(uri))


def normalize(uri: str) -> str:
    """Canonical form: local paths absolute (no scheme); remote URIs as given, trailing '/' removed."""
    uri = str(uri)
    if is_local(uri):
        return local_path(uri)
    head, rest = uri.split("://", 1)
    return f"{head.lower()}://{rest.rstrip('/') or rest}"


def spark_uri(uri: str) -> str:
    """The form Spark's Hadoop layer reads and writes: `s3://`/`s3n://` become `s3a://` (the maintained S3
    connector), `gcs://` becomes `gs://`, local paths stay absolute paths."""
    uri = normalize(uri)
    sch = scheme(uri)
    if sch in ("s3", "s3n"):
        return "s3a://" + uri.split("://", 1)[1]
    if sch == "gcs":
        return "gs://" + uri.split("://", 1)[1]
    return uri


def join(base: str, *parts: str) -> str:
    """Path join that keeps the scheme and authority (`Path` would fold `s3a://b/x` to `s3a:/b/x`)."""
    out = str(base)
    for p in parts:
        p = str(p).strip("/")
        if p:
            out = out.rstrip("/") + "/" + p
    return out


def parent(uri: str) -> str:
    uri = str(uri).rstrip("/")
    if is_local(uri):
        return os.path.dirname(local_path(uri))
    head, rest = uri.split("://", 1)
    return f"{head}://{posixpath.dirname(rest)}" if "/" in rest else uri


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/"))


def is_within(child: str, root: str) -> bool:
    """True when `child` is `root` or lies under it (same filesystem, compared on canonical paths)."""
    c, r = normalize(spark_uri(child)), normalize(spark_uri(root))
    if is_local(c) and is_local(r):
        c, r = os.path.realpath(c), os.path.realpath(r)
    return c == r or c.startswith(r.rstrip("/") + "/")


# ---------------------------------------------------------------- pyarrow filesystems, cached per process
_FS: dict[tuple, pafs.FileSystem] = {}
_LOCK = threading.Lock()


def _s3() -> pafs.FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kw = {"region": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"}
    if endpoint:
        sp = urlsplit(endpoint)
        kw["endpoint_override"] = sp.netloc or sp.path
        kw["scheme"] = sp.scheme or "https"
        kw["force_virtual_addressing"] = False
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kw["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kw["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if os.environ.get("AWS_SESSION_TOKEN"):
            kw["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kw)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a URI."""
    uri = normalize(uri)
    sch = scheme(uri)
    if sch == "":
        key: tuple = ("local",)
        path = uri
    else:
        parts = urlsplit(uri)
        key = (sch, parts.netloc)
        path = f"{parts.netloc}{parts.path}" if sch in (*_S3, *_GCS) else parts.path
    fs = _FS.get(key)
    if fs is None:
        with _LOCK:
            fs = _FS.get(key)
            if fs is None:
                if sch == "":
                    fs = pafs.LocalFileSystem()
                elif sch in _S3:
                    fs = _s3()
                elif sch in _GCS:
                    fs = pafs.GcsFileSystem()
                elif sch in ("hdfs", "viewfs"):
                    fs, _ = pafs.FileSystem.from_uri(f"hdfs://{urlsplit(uri).netloc}/")
                elif sch in _ABFS:
                    fs, _ = pafs.FileSystem.from_uri(uri)
                else:
                    raise ValueError(f"{uri}: unsupported URI scheme {sch!r}; use a path, file://, s3(a)://, "
                                     f"gs://, hdfs:// or abfs(s)://")
                _FS[key] = fs
    return fs, path


def _uri(template: str, path: str) -> str:
    """Turn a filesystem-internal path back into a URI of the same scheme as `template`."""
    sch = scheme(template)
    if sch == "" or sch == "file":
        return path
    parts = urlsplit(normalize(template))
    if sch in (*_S3, *_GCS):
        return f"{sch}://{path}"
    return f"{sch}://{parts.netloc}{path if path.startswith('/') else '/' + path}"


# ---------------------------------------------------------------- queries
@dataclass(frozen=True)
class FileEntry:
    uri: str
    size: int
    mtime_ns: int | None = None   # the store's modification time, where it keeps one


def info(uri: str) -> pafs.FileInfo:
    fs, path = resolve(uri)
    return fs.get_file_info(path)


def exists(uri: str) -> bool:
    return info(uri).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    return info(uri).type == pafs.FileType.Directory


def is_file(uri: str) -> bool:
    return info(uri).type == pafs.FileType.File


def size(uri: str) -> int:
    i = info(uri)
    if i.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri} does not exist")
    return int(i.size or 0)


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _local_files(root: str, recursive: bool) -> list[FileEntry]:
    """Files under a local directory, following symbolic links. Directories are expanded in path order and
    each real directory once (a link loop such as `sub/loop -> ..` is not walked again); a file reached by
    several paths is listed once, under its first path in sorted order. Broken links hold no bytes: skipped;
    an unreadable folder raises (it may hold input)."""
    heap, seen_dirs, files = [root], set(), {}
    while heap:
        d = heapq.heappop(heap)   # the smallest path first, so a directory is walked under its first path
        real = os.path.realpath(d)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            with os.scandir(d) as it:
                names = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            if d == root:
                raise
            continue   # removed while we listed
        for e in names:
            if _hidden(e.name):
                continue
            try:
                st = os.stat(e.path)   # follows links
            except OSError:
                if e.is_symlink():
                    continue   # a broken or self-referential link: no bytes behind it
                raise
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    heapq.heappush(heap, e.path)
            elif stat.S_ISREG(st.st_mode):
                files.setdefault(e.path, FileEntry(e.path, int(st.st_size), st.st_mtime_ns))
    out, real_files = [], set()
    for path in sorted(files):
        real = os.path.realpath(path)
        if real not in real_files:
            real_files.add(real)
            out.append(files[path])
    return out


def _files(uri: str, recursive: bool) -> list[FileEntry]:
    """Files under a directory, sorted, skipping hidden (`.x`) and marker (`_x`, Spark's `_temporary/`,
    `_attempt-*`) files and folders at every depth below it."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return _local_files(path, recursive)
    sel = pafs.FileSelector(path, recursive=recursive, allow_not_found=False)
    root = path.rstrip("/")
    out = []
    for e in fs.get_file_info(sel):
        if e.type != pafs.FileType.File:
            continue
        rel = e.path[len(root):].lstrip("/") if e.path.startswith(root) else e.base_name
        if any(_hidden(part) for part in rel.split("/")):
            continue
        out.append(FileEntry(_uri(uri, e.path), int(e.size or 0), e.mtime_ns))
    out.sort(key=lambda f: f.uri)
    return out


def walk(uri: str) -> Iterator[FileEntry]:
    """Every file under a directory, sorted, skipping hidden (`.x`) and marker (`_x`) files and folders;
    local symbolic links are followed with loop detection (`_local_files`)."""
    return iter(_files(uri, recursive=True))


def entries(uri: str) -> list[FileEntry]:
    """The files an input names: a glob's matches, a folder's files (`walk`), or the file itself; [] for a path
    that does not exist."""
    if any(ch in uri for ch in GLOB_CHARS):
        return glob(uri)
    i = info(uri)
    if i.type == pafs.FileType.Directory:
        return list(walk(uri))
    if i.type == pafs.FileType.File:
        return [FileEntry(uri, int(i.size or 0), i.mtime_ns)]
    return []


def glob_root(pattern: str) -> str:
    """The literal folder a glob is listed from: everything before the segment holding its first wildcard."""
    pattern = normalize(pattern) if is_local(pattern) else str(pattern)
    cut = min((i for i, ch in enumerate(pattern) if ch in GLOB_CHARS), default=len(pattern))
    return pattern[:cut].rsplit("/", 1)[0]


def _match(pats: list[str], parts: list[str]) -> bool:
    """Path segments against glob segments: `**` is zero or more whole segments, `*`/`?`/`[..]` stay inside one."""
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(pats[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(pats[1:], parts[1:])


def glob(pattern: str) -> list[FileEntry]:
    """Files matching a glob (`*`, `?`, `[...]` within a folder name, `**` across folders), listed from the
    literal folder (`glob_root`); hidden and marker names below it never match. A path that exists is taken
    literally, never as a pattern (a file named `a[1].jsonl` is that file)."""
    i = info(pattern)
    if i.type == pafs.FileType.File:
        return [FileEntry(pattern, int(i.size or 0), i.mtime_ns)]
    if i.type == pafs.FileType.Directory:
        return list(walk(pattern))
    base = glob_root(pattern)
    if not is_dir(base):
        return []
    full = normalize(pattern) if is_local(pattern) else str(pattern)
    pats = [p for p in full[len(base):].split("/") if p]
    recursive = len(pats) > 1 or "**" in pats
    out = []
    for e in _files(base, recursive):
        rel = e.uri[len(base.rstrip("/")):].lstrip("/") if e.uri.startswith(base.rstrip("/")) else e.uri
        if _match(pats, rel.split("/")):
            out.append(e)
    return out


# ---------------------------------------------------------------- reading
def open_input(uri: str) -> IO[bytes]:
    """A seekable binary file (random access: range reads on object stores)."""
    fs, path = resolve(uri)
    return fs.open_input_file(path)


def open_stream(uri: str) -> IO[bytes]:
    """A sequential binary stream (no transparent decompression: readers decide by file name)."""
    fs, path = resolve(uri)
    return fs.open_input_stream(path, compression=None)


def read_bytes(uri: str) -> bytes:
    with open_stream(uri) as f:
        return f.read()


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


# ---------------------------------------------------------------- writing
def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file. Local files go through a temporary name and a rename, so a reader never sees half a
    file; an object-store PUT is atomic by itself."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    parent_dir = posixpath.dirname(path)
    if parent_dir:
        fs.create_dir(parent_dir, recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(uri: str, text: str, encoding: str = "utf-8") -> None:
    write_bytes(uri, text.encode(encoding))


def open_output(uri: str) -> IO[bytes]:
    """A binary output stream (for large side files written piece by piece)."""
    fs, path = resolve(uri)
    parent_dir = posixpath.dirname(path)
    if parent_dir:
        fs.create_dir(parent_dir, recursive=True)
    return fs.open_output_stream(path)


def delete(uri: str, missing_ok: bool = True) -> None:
    """Remove a file or a whole directory tree."""
    fs, path = resolve(uri)
    t = fs.get_file_info(path).type
    if t == pafs.FileType.NotFound:
        if not missing_ok:
            raise FileNotFoundError(f"{uri} does not exist")
        return
    if t == pafs.FileType.Directory:
        fs.delete_dir(path)
    else:
        fs.delete_file(path)


def move(src: str, dst: str) -> None:
    """Move a file or directory. A rename on local disks and HDFS; on object stores a copy then a delete
    (callers treat the whole move as not yet committed until they write their marker)."""
    fs, spath = resolve(src)
    fs2, dpath = resolve(dst)
    if type(fs) is not type(fs2):
        raise ValueError(f"cannot move {src} to {dst}: different filesystems")
    delete(dst)
    if isinstance(fs, (pafs.LocalFileSystem, pafs.HadoopFileSystem)):
        parent_dir = posixpath.dirname(dpath)
        if parent_dir:
            fs.create_dir(parent_dir, recursive=True)
        fs.move(spath, dpath)
        return
    t = fs.get_file_info(spath).type
    if t == pafs.FileType.File:
        fs.copy_file(spath, dpath)
    else:
        for e in fs.get_file_info(pafs.FileSelector(spath, recursive=True)):
            if e.type == pafs.FileType.File:
                fs.copy_file(e.path, dpath + e.path[len(spath):])
    delete(src)
