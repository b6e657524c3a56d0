from imgtag.cli.commands import entry

entry()
