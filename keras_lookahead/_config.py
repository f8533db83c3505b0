"""Lookahead's config: what `get_config` writes, and how `from_config` reads it back.

The inner optimizer is nested as Keras serializes it; a schedule or curvature hook is saved as
its Keras config, and loaded only if it is a schedule or a callable the user registered, since
Lookahead calls it (`deserialize_callable`).
"""

import keras

from keras_lookahead import _checks as checks


def serialize(arguments):
    """A Lookahead's constructor arguments as its config: Python scalars and None as they are,
    everything else (the inner optimizer, schedules, a curvature hook) as Keras serializes it."""
    return {key: value if isinstance(value, (int, float, str)) or value is None
            else keras.saving.serialize_keras_object(value)
            for key, value in arguments.items()}


def arguments_of(config, custom_objects=None):
    """(the inner optimizer, the other constructor arguments) of a config `serialize` wrote."""
    if not isinstance(config, dict) or "optimizer" not in config:
        raise ValueError(
            "Lookahead: from_config needs a dict with the inner optimizer under "
            f"'optimizer' (as get_config writes it), got {config!r}."
        )
    config = dict(config)
    optimizer = config.pop("optimizer")
    if isinstance(optimizer, dict):
        if not isinstance(optimizer.get("class_name"), str):
            checks.resolve_optimizer(optimizer)  # raises, naming the argument
        optimizer = deserialize("optimizer", optimizer, custom_objects)
    for key in ("sync_period", "slow_step_size", "curvature"):
        if isinstance(config.get(key), dict):
            config[key] = deserialize_callable(key, config[key], custom_objects)
    return optimizer, config


def deserialize(argument, config, custom_objects):
    """Keras's deserialization of a saved argument, its failures named after the argument."""
    try:
        return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(
            f"Lookahead: the saved {argument} {config!r} cannot be deserialized ({e})."
        ) from None


def deserialize_callable(argument, config, custom_objects):
    """A saved schedule or curvature hook, if it is one; anything else is refused.

    The constructor calls a schedule (at 0 syncs), so loading a file must not produce an
    arbitrary function: a config may name any function of the Keras namespace (say
    `keras.config.set_epsilon`), and calling it would act on the whole process at load time.
    Accepted: `LearningRateSchedule` objects, and callables the user vouched for by registering
    them (`keras.saving.register_keras_serializable`) or passing them in `custom_objects`.
    """
    value = deserialize(argument, config, custom_objects)
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    # The names the config gives the object, looked up where the user puts their own: the
    # registry, `custom_objects` (also load_model's, which Keras passes as a scope).
    names = {config.get("registered_name"), config.get("class_name")}
    if isinstance(config.get("config"), str):
        names.add(config["config"])  # a function's name
    vouched = any(keras.saving.get_registered_object(n, custom_objects) is value
                  for n in names - {None, "function"})
    if not vouched:
        raise ValueError(
            f"Lookahead: the saved {argument} is {value!r}, which is not a schedule: only "
            "keras.optimizers.schedules.LearningRateSchedule objects and callables registered "
            "with keras.saving.register_keras_serializable (or passed in custom_objects) are "
            "loaded, because Lookahead calls them. Register your schedule to load it."
        )
    return value
