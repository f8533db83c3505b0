"""Local data for the examples and the experiment harnesses: a folder as given, or a .tar.gz of
folders extracted once; and the one reader of image-folder datasets they share.

It imports nothing from the other examples, so that the harnesses under benchmarks/ can use it as
`examples._data` (run from the repository root) while the examples import it as `_data`.
"""

import gzip
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


def read_lines(path):
    """The lines of a text file (gzip-compressed if it ends in .gz), without their newlines."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _has_images(folder):
    return any(e.is_file() and e.name.lower().endswith(IMAGE_ENDINGS) for e in os.scandir(folder))


def _holds_classes(folder):
    """Whether `folder` holds <class>/ sub-folders with images in them."""
    return any(e.is_dir() and _has_images(e.path) for e in os.scandir(folder))


def _split_folder(root, split):
    """The folder holding the <class>/ sub-folders, or None: `<split>/` under `root` (looking
    through wrapper folders such as cifar10/), or, with no split, the first folder that holds
    them."""
    for here, dirs, _ in sorted(os.walk(root)):
        if split is None and _holds_classes(here):
            return here
        if split is not None and split in dirs and _holds_classes(os.path.join(here, split)):
            return os.path.join(here, split)
    return None


def find_split(root, split=None, argument="--data-dir"):
    """`_split_folder`, or an error naming `argument` and the layout that was not found."""
    folder = _split_folder(root, split)
    if folder is None:
        what = f"{split}/<class>/" if split else "<class>/"
        raise SystemExit(f"{argument}: no {what} folders with images under {root!r}")
    return folder


def image_folder(root, split=None, classes=None, argument="--data-dir"):
    """(paths, labels, class names) of an image-folder dataset (one sub-folder per class),
    sorted by class and file name. `classes` fixes the names and their order (a test split
    labelled like its training split)."""
    folder = find_split(root, split, argument)
    names = classes or sorted(d.name for d in os.scandir(folder) if d.is_dir())
    paths, labels = [], []
    for label, name in enumerate(names):
        class_folder = os.path.join(folder, name)
        if not os.path.isdir(class_folder):  # a class of the training split missing here
            continue
        files = sorted(f.path for f in os.scandir(class_folder)
                       if f.name.lower().endswith(IMAGE_ENDINGS))
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise SystemExit(f"{argument}: no images in {folder!r}")
    return paths, labels, names


def has_split(root, split):
    """Whether `root` (or a wrapper folder in it) has a `<split>/<class>/` layout."""
    return _split_folder(root, split) is not None


def _read_images(paths, labels, limit, image_size, seed):
    """`limit` images (a seeded random subset) as float32 arrays in [0, 1], with their labels."""
    import keras
    import numpy as np

    keep = np.random.default_rng(seed).permutation(len(paths))[:limit]
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        paths[i], color_mode="rgb", target_size=image_size)) for i in keep]) / 255.0
    return x.astype("float32"), np.asarray(labels, "int32")[keep]


def load_folder(path, limit, image_size=(32, 32), seed=0):
    """An image-folder dataset as arrays: <class>/ folders, or train/<class>/ and
    test/<class>/ (then limit // 5 test images), or a .tar.gz of either. Returns
    ((x, y), (x_test, y_test), number of classes); images are read with keras.utils.load_img,
    so no tf.data is needed."""
    root = local_folder(path)
    if has_split(root, "train") and has_split(root, "test"):
        paths, labels, names = image_folder(root, "train")
        train = _read_images(paths, labels, limit, image_size, seed)
        paths, labels, _ = image_folder(root, "test", names)
        test = _read_images(paths, labels, max(limit // 5, 1), image_size, seed)
    else:
        paths, labels, names = image_folder(root)
        x, y = _read_images(paths, labels, limit, image_size, seed)
        split = int(0.8 * len(x))
        train, test = (x[:split], y[:split]), (x[split:], y[split:])
    return train, test, len(names)
