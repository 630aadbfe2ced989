"""arq workers: delivery processing, Graph API client, pacing."""
