"""The platform's components: one module each, its args model beside it."""
