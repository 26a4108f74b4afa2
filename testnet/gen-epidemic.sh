#!/bin/sh
# Prints the daily epidemic figures of Beijing's 16 districts for DAYS days
# ending on END (YYYY-MM-DD, default yesterday) as JSON Lines, deterministic
# for a given seed: one record per district and day, keyed "DATE DISTRICT",
# with new confirmed and asymptomatic cases, patients in hospital and
# recoveries that follow each other from day to day.
# usage: gen-epidemic.sh DAYS [END [SEED]]
set -eu
days=${1:-7}
end=${2:-$(date -u -d yesterday +%Y-%m-%d)}
seed=${3:-5}
case $days in
'' | *[!0-9]*)
    echo "usage: gen-epidemic.sh DAYS [END [SEED]]" >&2
    exit 2
    ;;
esac
# The dates, oldest first, one per line.
i=$((days - 1))
dates=""
while [ "$i" -ge 0 ]; do
    dates="$dates $(date -u -d "$end - $i days" +%Y-%m-%d)" || exit 2
    i=$((i - 1))
done
awk -v dates="$dates" -v seed="$seed" 'BEGIN {
    srand(seed)
    nd = split(dates, day, " ")
    split("东城区 西城区 朝阳区 丰台区 石景山区 海淀区 门头沟区 房山区 通州区 顺义区 昌平区 大兴区 怀柔区 平谷区 密云区 延庆区", districts, " ")
    # People per district, in ten thousands (rounded census figures).
    split("70 110 345 201 57 313 40 131 184 132 227 199 44 46 53 34", people, " ")
    for (k = 1; k <= 16; k++) hosp[k] = int(people[k] / 10 + rand() * 10)
    for (d = 1; d <= nd; d++) {
        for (k = 1; k <= 16; k++) {
            rate = people[k] / 100
            confirmed = int(rate * (1 + rand() * 3))
            asym = int(rate * rand() * 2)
            recovered = int(hosp[k] * (0.1 + rand() * 0.15))
            hosp[k] += confirmed - recovered
            printf "{\"key\":\"%s %s\",\"fields\":{\"date\":\"%s\",\"district\":\"%s\",\"new_confirmed\":\"%d\",\"new_asymptomatic\":\"%d\",\"in_hospital\":\"%d\",\"recovered\":\"%d\"}}\n", \
                day[d], districts[k], day[d], districts[k], confirmed, asym, hosp[k], recovered
        }
    }
}'
