"""Grading a class with the rungs' own checkers (`make grade SUBMISSIONS=dir`).

* ``submissions`` -- a folder of submissions (a subfolder or a zip per learner) and which notebook is which rung;
* ``jail``        -- what a learner's code may touch while it is graded (its own folder), and the container
                     command that real isolation of untrusted code needs;
* ``runner``      -- one notebook checked in a subprocess of its own: a working folder, a time limit, a memory cap;
* ``batch``       -- the whole class, two at a time where the machine allows, unchanged submissions reused;
* ``records``     -- what a grading run keeps: one result per learner and rung, grades.csv, the instructor's marks;
* ``report``      -- the HTML report, and the small server that saves an instructor's marks back into grades.csv;
* ``release``     -- the learners' copy of the course: no solutions, no hidden tests.
"""
