"""The benchmark suites and the paper's experiment harnesses.

Every script here runs as a module from the repository root, e.g.
`python -m benchmarks.performance` or `python -m benchmarks.cifar.train --profile cpu ...`: the
scripts import each other, the package and the examples' shared helpers (`examples._data`,
`examples._distribute`, ...) as packages, without editing `sys.path`.
"""
