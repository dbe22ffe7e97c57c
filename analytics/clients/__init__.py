"""The direct API clients and what they share (not the Segment-spec engine).

The engine (:mod:`analytics.client`, :mod:`analytics.engine`) queues
messages and delivers batches in the background; the clients here send one
request when called and raise when it fails.  The Customer.io clients
(:mod:`customerio`) are built on the same modules::

    http.py        one HTTP attempt per library: SyncHTTP (requests), AsyncHTTP (httpx),
                   JSONResponse; a failure becomes an exception, nothing waits
    retryable.py   the table of what each API retries (Track v1, Track v2 batch, App API,
                   Bloomreach) and the exceptions of a failed attempt
    retrying.py    the one retry executor, sync and async (backoff, Retry-After, time bound)
    auth.py        Authorization header values (Basic, Bearer)
    jsonapi.py     JSONClient: one base URL, one session, retries (analytics.apiclient re-exports it)
    bloomreach.py  the Bloomreach Engagement client (analytics.bloomreach re-exports it)

Importing this package imports none of them.
"""
