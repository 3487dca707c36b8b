
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
 var t=th.closest('table'),b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
 rows.sort(function(a,c){var x=a.cells[i].dataset.v||a.cells[i].textContent,y=c.cells[i].dataset.v||c.cells[i].textContent,
 nx=parseFloat(x),ny=parseFloat(y),r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?r:-r});
 rows.forEach(function(r){b.appendChild(r)})})});
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
 var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0}).length;document.body.setAttribute('data-images',ok+'/'+im.length)});
