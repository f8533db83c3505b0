"""Local data for the examples: a folder as given, or a .tar.gz of folders extracted once."""

import os
import tarfile
import tempfile


def local_folder(path, argument="--data-dir"):
    """`path` if it is a folder; a .tar.gz/.tgz/.tar is extracted to a temporary folder first."""
    if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz", ".tar")):
        folder = tempfile.mkdtemp(prefix="lookahead_data_")
        with tarfile.open(path) as tar:
            try:
                tar.extractall(folder, filter="data")  # refuses links and paths outside it
            except TypeError:  # Python without extraction filters
                tar.extractall(folder)
        return folder
    if not os.path.isdir(path):
        raise SystemExit(f"{argument}: {path!r} is neither a folder nor a .tar.gz of folders")
    return path
