"""The task seam: everything that differs between segmentation and detection (and any task
registered later) behind one interface, :class:`pipeline.tasks.base.Task`.

- :mod:`pipeline.tasks.catalog` (light, no torch): which datasets exist, which task each is
  for, which model names a task accepts; the config schema checks against it.
- :mod:`pipeline.tasks.registry`: task name → :class:`~pipeline.tasks.base.Task` subclass;
  ``build_task(cfg, project_root)`` is how every stage gets its task.
"""
