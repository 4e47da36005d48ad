"""Services: the business logic, called by the API routes and the Celery tasks alike."""
