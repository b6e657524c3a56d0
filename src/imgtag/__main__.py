from imgtag.cli import entry

entry()
