"""The command line: `python -m engine COMMAND` (or `runledger COMMAND`), an app over the engine and reporting
as the Streamlit app is."""
