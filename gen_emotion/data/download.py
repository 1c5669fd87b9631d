"""The pod's data step (``runpod/entry.sh``): the data named by a path or URL, made a folder holding train.csv
and test.csv, or one file to predict (of a data folder: its test file, found as ``run`` finds it).

``python -m gen_emotion.data.download SOURCE DEST [NAME]`` prints the folder (or, with NAME, the file). SOURCE is a
folder, a .tar.gz/.zip, a ``file://`` or an ``http(s)://`` URL (a presigned URL for S3); a URL's
``user:password@`` is sent as basic auth to its host only. A download lands in DEST (as NAME, else as
``download``) and an archive is unpacked to DEST/unpacked, where train.csv and test.csv may be at the top or
one folder down; a folder unpacked before (a restarted pod) is used again. What it prints shows the URL with
its credentials masked (``redaction.public_url``); a problem is one line on stderr and exit status 1.
"""

from __future__ import annotations

import base64
import shutil
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.redaction import public_url
from gen_emotion.data.sources import TEST, find_data_file

UNPACKED = "unpacked"
TIMEOUT_S = 300


def data_folder(root: Path, shown: str) -> Path:
    """``root`` or the first of its folders (in name order) that holds train.csv and test.csv."""
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (folder / "train.csv").is_file() and (folder / "test.csv").is_file():
            return folder
    raise GenEmotionError(f"{shown}: no train.csv and test.csv (at the top or one folder down)")


def fetch(url: str, path: Path, shown: str) -> None:
    """Download ``url`` to ``path``; urllib sends no ``user:password@`` of a URL, so it goes as basic auth, to
    this host only (not to a redirect's)."""
    parts = urllib.parse.urlsplit(url)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])))
    if parts.username is not None:
        login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, path.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as err:  # URLError and HTTPError too; their text holds no URL
        raise GenEmotionError(f"{shown}: download failed: {err}") from None


def unpack(archive: Path, dest: Path, shown: str) -> Path:
    """Unpack a .tar(.gz) or .zip into ``dest/unpacked`` (emptied first); its data folder."""
    unpacked = dest / UNPACKED
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir(parents=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as opened:
            opened.extractall(unpacked, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(unpacked)
    else:
        raise GenEmotionError(f"{shown}: not a folder, a .tar(.gz) or a .zip")
    return data_folder(unpacked, shown)


def prepare(source: str, dest: Path, single: str = "") -> Path:
    """The data folder of ``source`` (downloaded into and unpacked under ``dest`` as needed); with ``single``,
    the one file to predict (a download is saved as ``dest/single``)."""
    shown = public_url(source)
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme == "file":
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    elif scheme in ("http", "https"):
        if not single and (dest / UNPACKED).is_dir():  # downloaded before this pod restart
            return data_folder(dest / UNPACKED, shown)
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / (single or "download")
        fetch(source, path, shown)
    elif len(scheme) > 1:
        raise GenEmotionError(f"{shown}: use a folder, a file:// or an http(s):// URL (for S3: a presigned https URL)")
    else:
        path = Path(source)
    if single:
        return file_to_predict(path, shown)
    if path.is_dir():
        return data_folder(path.resolve(), shown)
    if not path.is_file():
        raise GenEmotionError(f"{shown}: no such file or folder")
    return unpack(path, dest, shown)


def file_to_predict(path: Path, shown: str) -> Path:
    """The file to predict: ``path``, or a data folder's test file (found as ``run`` finds it)."""
    if path.is_dir():
        found = find_data_file(path, TEST)
        if found is None:
            raise GenEmotionError(
                f"{shown}: a folder without a test file (test.csv, .tsv, .jsonl, .parquet or a datasets folder); "
                "predict takes a file, or a data folder holding its test file"
            )
        return found.resolve()
    if not path.is_file():
        raise GenEmotionError(f"{shown}: no such file")
    return path.resolve()


def main(argv: list[str] | None = None) -> int:
    """``SOURCE DEST [NAME]``: print the data folder (or the file NAME); a problem is one line, status 1."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m gen_emotion.data.download SOURCE DEST [NAME]", file=sys.stderr)
        return 2
    try:
        print(prepare(args[0], Path(args[1]), args[2] if len(args) == 3 else ""))
    except GenEmotionError as err:
        print(f"entry: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
