"""`rediswq dashboard`: a web page with every queue's live numbers, served by the standard library.

reader.py   how the numbers of many queues are read (the one place that knows the library's API for it)
board.py    the cache: one read cycle per interval, shared by every page; rates, history, details
actions.py  requeue, purge, close, reopen: off by default; token, CSRF and origin checks; the log
server.py   the HTTP server (http.server) and its routes
command.py  the click command
static/     index.html, app.js, app.css: the page, with no library and nothing from the network
"""
