"""A live, read-only web dashboard over study files (``nasforge dashboard``).

``data`` reads studies read-only and shapes them into JSON views; ``app`` serves them with
Starlette and uvicorn, and the page (``static/``) draws them with plotly.js from the plotly
package. Needs the ``dashboard`` extra: ``pip install 'nasforge[dashboard]'``.
"""
