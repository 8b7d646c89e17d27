"""The tiny world and its data: the generator of people, corpus and task splits (``generator``), the task
registry (``tasks``), loading the committed splits (``data``) and their checksums (``checksums``)."""
