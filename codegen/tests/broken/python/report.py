"""A module the python_task fixture names."""


def write_report(ctx):
    return {}


async def refresh(ctx):
    return {}
