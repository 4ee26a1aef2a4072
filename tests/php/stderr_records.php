<?php
// Messages in separate STDERR records: each flush() closes the record.
trigger_error("first", E_USER_WARNING);
echo "a";
flush();
trigger_error("second", E_USER_NOTICE);
echo "b";
flush();
error_log("custom message");
echo "c\n";
flush();
throw new Exception("boom");
