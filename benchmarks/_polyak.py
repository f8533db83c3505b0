"""Polyak-Ruppert averaging for the experiment harnesses: the paper's Polyak baseline (Tables 1
and 3), the uniform average of the weights after every step from a start epoch on, swapped in
where the method's numbers are evaluated. Not an exponential moving average."""

import contextlib


class PolyakAverage:
    """avg_n = avg_{n-1} + (w_n - avg_{n-1}) / n over `variables` (default: every variable of
    `model`, batch-norm statistics included), kept on the device, for the steps of epochs
    `start_epoch` (counted from 0) and later."""

    def __init__(self, model, start_epoch, variables=None):
        import keras

        self.start_epoch, self.count = start_epoch, 0
        self.variables = list(model.variables if variables is None else variables)
        # copies: on TensorFlow, a Variable made from another's `.value` would share it
        self.average = [keras.Variable(keras.ops.convert_to_numpy(v.value), trainable=False,
                                       name="polyak_" + v.name.replace("/", "_"))
                        for v in self.variables]

    def update(self, epoch):
        """After a training step of `epoch`: counts the weights in once averaging has begun."""
        if epoch < self.start_epoch:
            return
        self.count += 1
        rate = 1.0 / self.count
        for avg, v in zip(self.average, self.variables):
            avg.assign(avg + rate * (v - avg))

    @contextlib.contextmanager
    def swapped_in(self):
        """The average in the variables within the block (the weights themselves before any
        step was averaged); the weights come back after it, also on an exception."""
        if self.count == 0:
            yield
            return
        import keras

        saved = [keras.ops.copy(v.value) for v in self.variables]  # snapshots
        for v, avg in zip(self.variables, self.average):
            v.assign(avg)
        try:
            yield
        finally:
            for v, value in zip(self.variables, saved):
                v.assign(value)

    def state(self):
        """The count and the average as numpy arrays, for a checkpoint."""
        import keras

        return self.count, [keras.ops.convert_to_numpy(a.value) for a in self.average]

    def restore(self, count, arrays):
        """Puts back what `state` returned; refuses arrays that do not match the variables."""
        if len(arrays) != len(self.average):
            raise ValueError(f"a Polyak checkpoint of {len(arrays)} arrays for "
                             f"{len(self.average)} averaged variables")
        for avg, value in zip(self.average, arrays):
            if tuple(value.shape) != tuple(avg.shape):
                raise ValueError(f"a Polyak checkpoint array of shape {tuple(value.shape)} for "
                                 f"{avg.name} of shape {tuple(avg.shape)}")
            avg.assign(value)
        self.count = int(count)
