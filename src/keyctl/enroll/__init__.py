"""`keyctl enroll`: security keys for a batch of users, each registered through an admin-issued
enrollment session (the technician never holds a user's password or 2FA)."""
