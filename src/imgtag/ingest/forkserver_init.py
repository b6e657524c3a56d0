"""Imported by the forkserver only (first in its preload list), before anything slow is imported.

Never import this module elsewhere: it changes the importing process's signal dispositions. Children forked
by the forkserver inherit both settings (the forkserver restores, in each child, the handlers it had after
its preloads), so decode workers ignore Ctrl-C from their first instruction, not from their initializer on.
"""

from imgtag.ingest.lifeline import die_with_parent, ignore_interrupts

ignore_interrupts()
die_with_parent()
