<?php
// Reports each uploaded file as "field name size md5 error".
foreach ($_FILES as $field => $f) {
    $md5 = $f['error'] === UPLOAD_ERR_OK ? md5_file($f['tmp_name']) : '-';
    echo $field, ' ', $f['name'], ' ', $f['size'], ' ', $md5, ' ', $f['error'], "\n";
}
