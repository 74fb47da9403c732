# Runs one Python task for Sluice: imports the task's module from its file (with the
# `sluice_context` module beside the context file importable), calls the
# function with the task's context, and writes how it ended as JSON. Carried by the sluice
# binary and passed to the interpreter with `-c`; it uses the standard library only.
#
#   python -c <this> <module file> <function> <context.json> <result.json>
#
# The result is {"ending": "success", "outputs": {...}}, or "skip" / "not_ready" with a
# "reason" when the function raises an exception named SkipTask or NotReady (those of
# sluice_context, or any of the same name). Any other exception prints its traceback and
# exits 1.
import importlib.util
import json
import os
import sys


def main() -> int:
    module_file, function, context_file, result_file = sys.argv[1:5]
    # The module's own folder, then the folder of the context file, where the binary put the
    # `sluice_context` module it was built with (the task's imports of it resolve there).
    sys.path.insert(0, os.path.dirname(os.path.abspath(module_file)))
    sys.path.insert(0, os.path.dirname(os.path.abspath(context_file)))
    spec = importlib.util.spec_from_file_location("sluice_task_module", module_file)
    if spec is None or spec.loader is None:
        print(f"cannot load the module {module_file}", file=sys.stderr)
        return 1
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    call = getattr(module, function, None)
    if not callable(call):
        print(f"{module_file} has no function {function}", file=sys.stderr)
        return 1
    with open(context_file, encoding="utf-8") as f:
        context = json.load(f)
    try:
        outputs = call(context)
    except Exception as e:  # noqa: BLE001 - the ending is decided by the exception's name
        name = type(e).__name__
        if name in ("SkipTask", "NotReady"):
            ending = "skip" if name == "SkipTask" else "not_ready"
            result = {"ending": ending, "reason": str(e) or name}
        else:
            raise
    else:
        if outputs is None:
            outputs = {}
        if not isinstance(outputs, dict):
            print(f"{function} returned {type(outputs).__name__}, not a dict of its outputs", file=sys.stderr)
            return 1
        result = {"ending": "success", "outputs": outputs}
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


sys.exit(main())
