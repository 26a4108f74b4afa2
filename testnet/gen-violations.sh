#!/bin/sh
# Prints N generated vehicle-violation records as JSON Lines, deterministic
# for a given seed: plates like 京A12345, 18-digit resident ID numbers with
# valid GB 11643 check digits, real-looking times and places.
# usage: gen-violations.sh N [SEED]
set -eu
n=${1:-300}
seed=${2:-7}
awk -v n="$n" -v seed="$seed" 'BEGIN {
    srand(seed)
    split("A B C D E F G H J K L M N P Q", letters, " ")
    split("朝阳区建国路与东三环交叉口 海淀区中关村大街 东城区长安街 西城区西单北大街 丰台区南三环西路 通州区新华大街 昌平区回龙观东大街 大兴区兴华大街", places, " ")
    split("闯红灯 超速20%以上 违法停车 不按导向车道行驶 未系安全带 驾车使用手机 逆向行驶 不礼让行人", viols, " ")
    split("200 200 200 100 50 200 200 200", fines, " ")
    split("110101 110102 110105 110106 110108 110111 110112 110114", areas, " ")
    split("7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2", w, " ")
    checks = "10X98765432"
    for (i = 1; i <= n; i++) {
        plate = sprintf("京%s%05d", letters[1 + int(rand() * 15)], int(rand() * 100000))
        y = 1960 + int(rand() * 45); m = 1 + int(rand() * 12); d = 1 + int(rand() * 28)
        id17 = sprintf("%s%04d%02d%02d%03d", areas[1 + int(rand() * 8)], y, m, d, int(rand() * 1000))
        s = 0
        for (k = 1; k <= 17; k++) s += substr(id17, k, 1) * w[k]
        id = id17 substr(checks, (s % 11) + 1, 1)
        v = 1 + int(rand() * 8)
        t = sprintf("2026-%02d-%02d %02d:%02d", 1 + int(rand() * 11), 1 + int(rand() * 28), 6 + int(rand() * 16), int(rand() * 60))
        printf "{\"key\":\"%s\",\"fields\":{\"plate\":\"%s\",\"time\":\"%s\",\"place\":\"%s\",\"violation\":\"%s\",\"fine\":\"%s\",\"owner_id\":\"%s\"}}\n", \
            plate, plate, t, places[1 + int(rand() * 8)], viols[v], fines[v], id
    }
}'
