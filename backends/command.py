"""Imported first by a process of the `dlc` command's that does not start in dlc.cli.entry (the fork server of
`dlc tune`, whose trials are forked with the framework imported): marks it the command's, as
dlc.api.as_the_command does (dlc.backends.COMMAND: Keras imported without its scikit-learn wrappers)."""

import dlc.backends

dlc.backends.COMMAND = True
