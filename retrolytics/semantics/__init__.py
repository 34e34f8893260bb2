"""What the numbers mean, written once in plain Python.

Each module here is the reference implementation of one analysis: small, direct code over a list
of events, without SQL or performance tricks. The dbt models compute the same things at scale,
and the tests compare the two on generated streams, windowed runs and late events; where a peer
(PostHog, Mixpanel, Amplitude) counts differently, the module says so. Read these to know
exactly what a figure in a mart counts.
"""
