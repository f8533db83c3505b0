"""Argument checks shared by the examples: profiles fill what the command line leaves out, and
bad values are refused with the argument's name, its value and what is allowed."""


def fill_from_profile(args, profile):
    for key, value in profile.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def require_counts(parser, args, positive=(), non_negative=()):
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 1 or more")
    for name in non_negative:
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 0 or more")
