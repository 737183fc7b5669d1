"""Events and notifications, the pure part: event schemas (:mod:`.events`), subscription
filters (:mod:`.filters`), rendered messages (:mod:`.rendered`, :mod:`.messages`; escaping and
chunking in :mod:`.markup`) and the delivery policy (:mod:`.policy`)."""
