"""Downstream multiple-choice tasks: their items (``items``) and their scores inside a trial (``scoring``)."""
