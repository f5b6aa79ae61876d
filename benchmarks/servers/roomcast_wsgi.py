"""The benchmark app (roomcast_app.py) as a WSGI application, for gunicorn's workers:
    gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w 1 roomcast_wsgi:application
"""
import roomcast
from roomcast_app import io

application = roomcast.WSGIApp(io)
