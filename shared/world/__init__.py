"""The tiny world and its data: the generator of people, corpus and task splits (``generator``), the task
registry (``tasks``), loading the committed splits (``data``) and their checksums (``checksums``); the preference
pairs of rungs 06 and 08 and their judge (``preferences``), and rung 07's two-step word problems
(``word_problems``)."""
