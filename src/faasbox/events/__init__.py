"""What makes functions run when something happens: queues, queue -> function
mappings, object notifications, schedules and alarms, driven by one dispatcher."""
