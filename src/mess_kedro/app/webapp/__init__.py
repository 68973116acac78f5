"""The listening room: a small web app to search, listen, compare and annotate (``mess-kedro serve``).

- :mod:`.room`: the served run, loaded once, and the questions the page asks of it;
- :mod:`.api`: the FastAPI app (error handlers, guards, headers) over the room;
- :mod:`.routes_collection`, :mod:`.routes_search`, :mod:`.routes_annotations`: its routes
  (page, collection, audio with HTTP ranges; searches; triplet judgements), given the room by
  :mod:`.dependencies`;
- :mod:`.guards`: Host allow-list, write header and Origin, header and body budgets;
- :mod:`.uploads`: query files received within limits, sniffed, decoded off the event loop;
- :mod:`.byte_ranges`: HTTP ``Range`` headers;
- :mod:`.annotations` and :mod:`.proposals`: human triplet judgements and which to ask next;
- ``static/``: the page (plain HTML, CSS and JavaScript; plotly.js from the plotly package).
"""
