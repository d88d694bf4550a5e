from dlc.cli import entry

entry()
