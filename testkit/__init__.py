"""The test and bench kit: in-process servers, free ports, a child's ``listening on`` line, moto S3,
small real forests and their ``model.tar.gz``, used by ``tests/`` and ``bench/``.

Production packages never import it (tests/unit/test_import_graph.py checks); it imports them
(``endpoint.http``, ``endpoint.sockets``) for the one way a server here runs on a bound socket.
Heavy dependencies (moto, scikit-learn, boto3) are imported inside the functions that need them.
"""
