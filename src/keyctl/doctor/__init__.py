"""`keyctl doctor`: find and explain what stops keyctl from reaching security keys and secrets."""
