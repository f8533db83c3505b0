"""Local data for the examples and the experiment harnesses: a folder as given, or a .tar.gz of
folders extracted once; and the one reader of image-folder datasets they share."""

import os
import tarfile
import tempfile

IMAGE_ENDINGS = (".jpg", ".jpeg", ".png")


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


def _has_images(folder):
    return any(e.is_file() and e.name.lower().endswith(IMAGE_ENDINGS) for e in os.scandir(folder))


def _holds_classes(folder):
    """Whether `folder` holds <class>/ sub-folders with images in them."""
    return any(e.is_dir() and _has_images(e.path) for e in os.scandir(folder))


def find_split(root, split=None, argument="--data-dir"):
    """The folder holding the <class>/ sub-folders: `<split>/` under `root` (looking through
    wrapper folders such as cifar10/), or, with no split, the first folder that holds them."""
    for here, dirs, _ in sorted(os.walk(root)):
        if split is None and _holds_classes(here):
            return here
        if split is not None and split in dirs and _holds_classes(os.path.join(here, split)):
            return os.path.join(here, split)
    what = f"{split}/<class>/" if split else "<class>/"
    raise SystemExit(f"{argument}: no {what} folders with images under {root!r}")


def image_folder(root, split=None, classes=None, argument="--data-dir"):
    """(paths, labels, class names) of an image-folder dataset (one sub-folder per class),
    sorted by class and file name. `classes` fixes the names and their order (a test split
    labelled like its training split)."""
    folder = find_split(root, split, argument)
    names = classes or sorted(d.name for d in os.scandir(folder) if d.is_dir())
    paths, labels = [], []
    for label, name in enumerate(names):
        class_folder = os.path.join(folder, name)
        files = sorted(f.path for f in os.scandir(class_folder)
                       if f.name.lower().endswith(IMAGE_ENDINGS)) if os.path.isdir(
                           class_folder) else []
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise SystemExit(f"{argument}: no images in {folder!r}")
    return paths, labels, names


def has_split(root, split):
    """Whether `root` (or a wrapper folder in it) has a `<split>/<class>/` layout."""
    try:
        find_split(root, split)
    except SystemExit:
        return False
    return True
