"""The document library behind RAG: answers grounded in the customer's own documents.

- `models`: Document and Passage (owned by an account; only ever queried through it).
- `extract`: an uploaded file (txt, md, html, pdf, docx) to text, or a DocumentError.
- `passages`: text split into bounded, overlapping passages under their headings.
- `library`: adding a document atomically within the account's limits.
- `search`: the Retriever interface and the database's own full-text search behind it.
- `grounding`: the `rag` extension of /v1/chat/completions (passages into the prompt,
  before the credit hold, so the hold and the charge cover them).
- `api` (/v1/documents) and `views` (the console's Documents page).
"""
