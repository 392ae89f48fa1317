"""The report's parts: ``sections`` (one function per page section), ``plots`` (figures),
``html`` (page assembly) and ``model_names`` (how models are named, ordered and coloured).

:func:`moa_features.report.build_report` reads the inputs and assembles the page from these.
"""
