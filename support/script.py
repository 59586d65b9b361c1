"""How every script ends when something outside its own checks stops it: Ctrl-C, or memory
running out, is one line saying what was kept, never a traceback of the library it hit.

Every output is written whole or not at all (atomic.py), so an interrupted script has written
exactly the files atomic.published counts. File names that are not UTF-8 (bytes a file system
allows) are printed with backslash escapes rather than ending the run on the print.
"""
import sys

from support import atomic


def kept():
    """What an interrupted script leaves, in words."""
    done = atomic.published
    if not done.count:
        return "nothing was written (outputs appear whole, at the end, or not at all)"
    more = f" and {done.count - len(done.names)} more" if done.count > len(done.names) else ""
    return f"kept {', '.join(done.names)}{more}, each written whole; nothing else was written"


def run_main(prog, main, interrupted=None):
    """main()'s exit status, as script `prog`. interrupted: a function giving the line to say
    on Ctrl-C (None: what atomic.published counts)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return main()
    except KeyboardInterrupt:
        why = interrupted() if interrupted else kept()
        sys.exit(f"\n{prog}: interrupted; {why}")
    except MemoryError:
        sys.exit(f"{prog}: error: out of memory; {kept()}")
