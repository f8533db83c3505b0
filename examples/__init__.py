"""Short, runnable examples. Each runs as a script (`python examples/quickstart.py`) and imports
the helpers beside it (`_data`, `_distribute`, `_loop`, `_args`) as top-level modules; the
experiment harnesses under benchmarks/ import the same helpers as `examples._data`, ... (they
import nothing from the other examples)."""
