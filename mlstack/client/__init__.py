"""The web client for people who do not use curl (`python -m mlstack.client`, make client).

Modules: api (the HTTP client of our model server, errors as messages), inputs (wine rows,
CSV batches, digit pictures), app (the Streamlit page), __main__ (starting it).
"""
