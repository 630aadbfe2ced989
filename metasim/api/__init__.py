"""Meta's HTTP side: the pipeline a call goes through, routing, Instagram and Threads routes,
paging, versions, and the error bodies Meta answers with."""
