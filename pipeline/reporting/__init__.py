"""Helpers of the ``report`` stage: table specs (:mod:`.specs`), the experiment → paper row
index (:mod:`.experiments`), run files (:mod:`.runs`), table building (:mod:`.tables`,
:mod:`.tune`), statistics over seeds (:mod:`.statistics`, :mod:`.seeds`) and rendering
(:mod:`.render`), plots (:mod:`.plots`), the README section (:mod:`.readme`) and
``summary.json`` (:mod:`.summary`)."""
