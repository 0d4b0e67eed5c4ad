"""The storage package: the only modules of convosd that run SQL.

One SQLite database per state dir (:mod:`convosd.storage.store`), each table family owned by
one module with a typed API; writes that must stand or fall with a journal batch travel as
typed units of work (:mod:`convosd.storage.work`).
"""
